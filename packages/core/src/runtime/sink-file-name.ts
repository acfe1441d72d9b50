/**
 * A sink's name as one file or folder name: characters other than letters, digits, `_`,
 * `.` and `-` become `_` (a sink's id is `<index>:<connection>`). Used for everything kept
 * per sink under the state folder (spill logs, dead-letter files).
 */
export function sinkFileName(sink: string): string {
  return sink.replace(/[^A-Za-z0-9_.-]/g, '_');
}
