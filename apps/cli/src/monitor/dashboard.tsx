/** @jsxRuntime automatic */
/** @jsxImportSource react */
import type { PipelineStatus } from '@nanosync/core/host';
import { Box, render, Text, useApp, useInput } from 'ink';
import { useEffect, useState, useSyncExternalStore } from 'react';
import { formatLag, formatRate, retryText } from '../format.js';
import {
  formatCount,
  progressBar,
  SINK_HEADER,
  sinkCells,
  snapshotFraction,
  snapshotSummary,
  tableSnapshotFraction,
  walShare,
  walSummary,
} from './format.js';
import {
  effectiveView,
  INITIAL_NAVIGATION,
  keyOf,
  type Navigation,
  navigate,
  selectedName,
  sortPipelines,
} from './navigation.js';
import type { MonitorState, StatusPoller } from './poller.js';

const BAR_WIDTH = 20;

const STATE_COLORS: Record<string, string> = {
  CREATED: 'gray',
  WAITING: 'magenta',
  SNAPSHOTTING: 'cyan',
  LIVE_CDC: 'green',
  DEGRADED: 'yellow',
  RETRYING: 'magenta',
  PAUSED: 'yellow',
  ERRORED: 'red',
  COMPLETED: 'blue',
};

export interface DashboardViewProps {
  state: MonitorState;
  navigation: Navigation;
  server: string;
  intervalMs: number;
}

/** Everything on screen for one state of the poller and the keys; no effects (rendered in tests too). */
export function DashboardView({ state, navigation, server, intervalMs }: DashboardViewProps) {
  const pipelines = sortPipelines(state.pipelines ?? []);
  const names = pipelines.map((p) => p.name);
  const view = effectiveView(navigation, names);
  const selected = selectedName(navigation, names);
  const detail = view === 'tables' ? pipelines.find((p) => p.name === selected) : undefined;
  return (
    <Box flexDirection="column">
      <Header state={state} server={server} intervalMs={intervalMs} pipeline={detail} />
      <Box marginTop={1} flexDirection="column">
        {state.pipelines === undefined ? (
          <Text dimColor>{state.down ? 'no data yet: waiting for the server to answer' : 'loading…'}</Text>
        ) : detail ? (
          <TableView pipeline={detail} />
        ) : (
          <PipelineList pipelines={pipelines} selected={selected} />
        )}
      </Box>
      <Notes pipelines={detail ? [detail] : pipelines} />
      <Box marginTop={1}>
        <Text dimColor>{detail ? 'Esc back · q quit' : '↑/↓ select · Enter tables · q quit'}</Text>
      </Box>
    </Box>
  );
}

function Header({
  state,
  server,
  intervalMs,
  pipeline,
}: {
  state: MonitorState;
  server: string;
  intervalMs: number;
  pipeline?: PipelineStatus | undefined;
}) {
  const every = `${formatSecondsShort(intervalMs)}`;
  return (
    <Box flexDirection="column">
      <Text>
        <Text bold>nanosync monitor</Text>
        {pipeline ? (
          <Text>
            {' › '}
            <Text bold>{pipeline.name}</Text> <Text color={STATE_COLORS[pipeline.state]}>{pipeline.state}</Text>
            {`  lag ${formatLag(pipeline.lagSeconds)}  ${formatRate(pipeline.eventsPerSecond)} events/s  ${pipeline.replicationType}`}
          </Text>
        ) : (
          <Text dimColor>{`  ${server}`}</Text>
        )}
      </Text>
      {state.down ? (
        <Text color="red" wrap="wrap">
          {`✖ server unreachable (${state.down.attempts} ${state.down.attempts === 1 ? 'try' : 'tries'} since ${clock(state.down.since)}, retrying every ${every}): ${state.down.message}`}
        </Text>
      ) : state.updatedAt ? (
        <Text>
          <Text color="green">● connected</Text>
          <Text dimColor>{` · updated ${clock(state.updatedAt)} · every ${every}`}</Text>
        </Text>
      ) : (
        <Text dimColor>connecting…</Text>
      )}
      {state.down && state.updatedAt ? (
        <Text dimColor>{`showing the last figures received, from ${clock(state.updatedAt)}`}</Text>
      ) : null}
    </Box>
  );
}

function PipelineList({ pipelines, selected }: { pipelines: PipelineStatus[]; selected?: string | undefined }) {
  if (pipelines.length === 0) return <Text dimColor>no pipelines (create some with: nanosync apply --file FILE)</Text>;
  const rows = pipelines.map((p) => ({
    p,
    cells: [p.name, p.state, formatLag(p.lagSeconds), formatRate(p.eventsPerSecond)],
  }));
  const header = ['PIPELINE', 'STATE', 'LAG', 'EVENTS/S'];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r.cells[i]!.length)));
  return (
    <Box flexDirection="column">
      <Text bold>{`  ${header.map((h, i) => h.padEnd(widths[i]!)).join('  ')}  SNAPSHOT`}</Text>
      {rows.map(({ p, cells }) => {
        const isSelected = p.name === selected;
        return (
          <Text key={p.name} wrap="truncate-end" inverse={isSelected}>
            {isSelected ? '› ' : '  '}
            {cells[0]!.padEnd(widths[0]!)}
            {'  '}
            <Text color={STATE_COLORS[p.state]}>{cells[1]!.padEnd(widths[1]!)}</Text>
            {'  '}
            {cells[2]!.padEnd(widths[2]!)}
            {'  '}
            {cells[3]!.padEnd(widths[3]!)}
            {'  '}
            {p.snapshot
              ? `${progressBar(snapshotFraction(p.snapshot), BAR_WIDTH)} ${snapshotSummary(p.snapshot)}`
              : '-'}
          </Text>
        );
      })}
    </Box>
  );
}

function TableView({ pipeline }: { pipeline: PipelineStatus }) {
  const tableRows = pipeline.tables.map((t) => {
    const fraction = tableSnapshotFraction(t);
    return [
      t.table,
      formatCount(t.rowsSnapshotted),
      formatCount(t.events),
      formatLag(t.lagSeconds),
      fraction === undefined ? '-' : `${progressBar(fraction, 10)} ${t.partitionsDone}/${t.partitionsTotal}`,
    ];
  });
  const sinkRows = pipeline.sinks.map(sinkCells);
  const share = walShare(pipeline.source);
  return (
    <Box flexDirection="column">
      {pipeline.tables.length === 0 ? (
        <Text dimColor>no tables reported yet</Text>
      ) : (
        <Columns header={['TABLE', 'ROWS SNAPSHOTTED', 'EVENTS', 'LAG', 'SNAPSHOT']} rows={tableRows} />
      )}
      {pipeline.snapshot && !pipeline.snapshot.done ? (
        <Text>{`snapshot ${snapshotSummary(pipeline.snapshot)} · ${formatCount(pipeline.snapshot.rowsRead)} of about ${formatCount(pipeline.snapshot.rowsEstimated)} rows`}</Text>
      ) : null}
      {sinkRows.length > 0 ? (
        <Box marginTop={1}>
          <Columns header={SINK_HEADER} rows={sinkRows} />
        </Box>
      ) : null}
      <Box marginTop={1}>
        <Text
          color={
            share !== undefined && share >= 0.8 ? 'red' : share !== undefined && share >= 0.5 ? 'yellow' : undefined
          }
        >
          {`WAL retained ${walSummary(pipeline.source)}`}
        </Text>
      </Box>
    </Box>
  );
}

function Columns({ header, rows }: { header: string[]; rows: string[][] }) {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `  ${cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')}`;
  return (
    <Box flexDirection="column">
      <Text bold>{line(header)}</Text>
      {rows.map((r) => (
        <Text key={r[0]} wrap="truncate-end">
          {line(r)}
        </Text>
      ))}
    </Box>
  );
}

/** Errors and warnings under the table: they are what an operator must not miss. */
function Notes({ pipelines }: { pipelines: PipelineStatus[] }) {
  const notes: { key: string; color: string; text: string }[] = [];
  for (const p of pipelines) {
    if (p.retry)
      notes.push({
        key: `${p.name}:retry`,
        color: 'magenta',
        text: `↻ ${p.name}: retrying, ${retryText(p.retry)}: ${p.retry.lastError}`,
      });
    else if (p.error) notes.push({ key: `${p.name}:error`, color: 'red', text: `✖ ${p.name}: ${p.error}` });
    if (p.waitingFor)
      notes.push({ key: `${p.name}:waiting`, color: 'magenta', text: `⏸ ${p.name}: waiting for ${p.waitingFor}` });
    for (const w of p.warnings) notes.push({ key: `${p.name}:${w}`, color: 'yellow', text: `⚠ ${p.name}: ${w}` });
    if (p.heldBy)
      notes.push({ key: `${p.name}:held`, color: 'gray', text: `${p.name}: run by another server (${p.heldBy})` });
  }
  if (notes.length === 0) return null;
  return (
    <Box marginTop={1} flexDirection="column">
      {notes.map((n) => (
        <Text key={n.key} color={n.color} wrap="wrap">
          {n.text}
        </Text>
      ))}
    </Box>
  );
}

export interface DashboardProps {
  poller: StatusPoller;
  server: string;
  intervalMs: number;
}

/** The live dashboard: subscribes to the poller, handles the keys, exits on q. */
export function Dashboard({ poller, server, intervalMs }: DashboardProps) {
  const state = useSyncExternalStore(poller.subscribe, poller.getState);
  const [navigation, setNavigation] = useState<Navigation>(INITIAL_NAVIGATION);
  const { exit } = useApp();
  useInput((input, key) => {
    const action = keyOf(input, key);
    if (action === undefined) return;
    const names = sortPipelines(poller.getState().pipelines ?? []).map((p) => p.name);
    setNavigation((nav) => navigate({ ...nav, view: effectiveView(nav, names) }, action, names));
  });
  useEffect(() => {
    if (navigation.quit) exit();
  }, [navigation.quit, exit]);
  return <DashboardView state={state} navigation={navigation} server={server} intervalMs={intervalMs} />;
}

/** `14:03:27`, local time. */
export function clock(date: Date): string {
  return [date.getHours(), date.getMinutes(), date.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

function formatSecondsShort(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${(ms / 1000).toFixed(1)}s`;
}

/** Draws the dashboard until the user quits (q or Ctrl-C). */
export async function showDashboard(poller: StatusPoller, server: string, intervalMs: number): Promise<void> {
  const app = render(<Dashboard poller={poller} server={server} intervalMs={intervalMs} />, {
    exitOnCtrlC: true,
    patchConsole: false,
  });
  await app.waitUntilExit();
}
