import type { PipelineStatus } from '@nanosync/core/host';

/** Where the dashboard is: the pipeline list, or the per-table view of one pipeline. */
export interface Navigation {
  view: 'pipelines' | 'tables';
  /** Selected pipeline by name, so the selection survives refreshes that reorder or add pipelines. */
  selected?: string;
  quit: boolean;
}

export type NavigationKey = 'up' | 'down' | 'enter' | 'back' | 'quit';

export const INITIAL_NAVIGATION: Navigation = { view: 'pipelines', quit: false };

/** Pipelines in the order the dashboard lists them. */
export function sortPipelines(pipelines: readonly PipelineStatus[]): PipelineStatus[] {
  return [...pipelines].sort((a, b) => a.name.localeCompare(b.name));
}

/** The pipeline the cursor is on: the remembered one while it exists, else the first. */
export function selectedName(nav: Navigation, names: readonly string[]): string | undefined {
  return nav.selected !== undefined && names.includes(nav.selected) ? nav.selected : names[0];
}

/**
 * What a key does. `names` are the listed pipelines in display order. The per-table view
 * needs its pipeline: when the pipeline is gone (deleted meanwhile) the list comes back.
 */
export function navigate(nav: Navigation, key: NavigationKey, names: readonly string[]): Navigation {
  if (key === 'quit') return { ...nav, quit: true };
  const current = selectedName(nav, names);
  const index = current === undefined ? -1 : names.indexOf(current);
  switch (key) {
    case 'up':
      if (nav.view !== 'pipelines' || index <= 0) return { ...nav, selected: current };
      return { ...nav, selected: names[index - 1] };
    case 'down':
      if (nav.view !== 'pipelines' || index < 0 || index >= names.length - 1) return { ...nav, selected: current };
      return { ...nav, selected: names[index + 1] };
    case 'enter':
      return current === undefined ? nav : { ...nav, view: 'tables', selected: current };
    case 'back':
      return { ...nav, view: 'pipelines' };
  }
}

/** The view actually shown: the per-table view falls back to the list when its pipeline is gone. */
export function effectiveView(nav: Navigation, names: readonly string[]): Navigation['view'] {
  return nav.view === 'tables' && (nav.selected === undefined || !names.includes(nav.selected))
    ? 'pipelines'
    : nav.view;
}

/** Terminal input (ink's `useInput` arguments) → a dashboard key. */
export function keyOf(
  input: string,
  key: {
    upArrow?: boolean;
    downArrow?: boolean;
    return?: boolean;
    escape?: boolean;
    backspace?: boolean;
    leftArrow?: boolean;
  },
): NavigationKey | undefined {
  if (key.upArrow || input === 'k') return 'up';
  if (key.downArrow || input === 'j') return 'down';
  if (key.return) return 'enter';
  if (key.escape || key.backspace || key.leftArrow) return 'back';
  if (input === 'q' || input === 'Q') return 'quit';
  return undefined;
}
