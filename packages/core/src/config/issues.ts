import { ErrorCode, NanosyncError } from '../errors.js';

/**
 * One problem found in a config file. `path` is the YAML path of the offending field
 * (`pipelines[0].sink.properties.topic`); `line`/`column` (1-based) are set when the
 * config came from a file and the node could be located.
 */
export interface ConfigIssue {
  path: string;
  message: string;
  line?: number;
  column?: number;
  /** The error code that fits this issue best (unknown key, missing variable, YAML syntax…). */
  code?: string;
}

export type PathSegment = string | number;

/** `['pipelines', 0, 'sink', 'properties', 'topic']` → `pipelines[0].sink.properties.topic`. */
export function formatPath(segments: readonly PathSegment[]): string {
  let out = '';
  for (const segment of segments) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(segment)) out += out === '' ? segment : `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}

function formatIssue(issue: ConfigIssue, file: string | undefined): string {
  const where = [file, issue.line, issue.line === undefined ? undefined : issue.column]
    .filter((part) => part !== undefined)
    .join(':');
  const path = issue.path === '' ? '' : `${issue.path}: `;
  return `${where === '' ? '' : `${where} `}${path}${issue.message}`;
}

/**
 * The config is invalid. Carries every issue found (not just the first); the message
 * lists them all, each with file, line:column when known, and YAML path.
 */
export class ConfigError extends NanosyncError {
  readonly issues: ConfigIssue[];
  readonly file: string | undefined;

  constructor(issues: ConfigIssue[], options: { file?: string; cause?: unknown; code?: string } = {}) {
    const codes = new Set(issues.map((issue) => issue.code ?? ErrorCode.ConfigInvalid));
    const code = options.code ?? (codes.size === 1 ? [...codes][0]! : ErrorCode.ConfigInvalid);
    const subject = options.file ?? 'config';
    const count = issues.length === 1 ? '1 problem' : `${issues.length} problems`;
    const lines = issues.map((issue) => `  - ${formatIssue(issue, options.file)}`);
    super(
      code,
      `${subject}: ${count}\n${lines.join('\n')}`,
      options.cause === undefined ? {} : { cause: options.cause },
    );
    this.issues = issues;
    this.file = options.file;
  }
}

/** Edit distance counting an adjacent swap as one edit (optimal string alignment), for "did you mean" hints. */
function editDistance(a: string, b: string): number {
  const rows: number[][] = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let best = Math.min(rows[i - 1]![j]! + 1, rows[i]![j - 1]! + 1, rows[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        best = Math.min(best, rows[i - 2]![j - 2]! + 1);
      rows[i]![j] = best;
    }
  }
  return rows[a.length]![b.length]!;
}

/** The closest of `candidates` to `word`, when it is close enough to be a plausible typo. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const candidate of candidates) {
    const distance = editDistance(word.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) {
      best = candidate;
      bestDistance = distance;
    }
  }
  const limit = Math.max(1, Math.floor(Math.max(word.length, best?.length ?? 0) / 3));
  return bestDistance <= limit ? best : undefined;
}

export function didYouMean(word: string, candidates: readonly string[]): string {
  const hint = closest(word, candidates);
  return hint === undefined ? '' : ` (did you mean "${hint}"?)`;
}
