import { defineErrorArea, NanosyncError } from '@nanosync/core';

/** The file sink's error codes (block NS_F8000–NS_F8999). */
export const fileSinkErrors = defineErrorArea({
  area: 'file sink',
  letter: 'F',
  range: [8000, 8999],
  codes: {
    FileSinkWrite: {
      code: 'NS_F8001',
      meaning:
        'The file sink cannot create, write or sync a file in its folder. Retried when the cause may pass (disk full, I/O error).',
      fix: 'Check that the folder exists, the server may write to it, and the disk has room.',
    },
  },
});

/** Errors that may go away on their own (disk full, I/O hiccup) are retried by core. */
const RETRIABLE_CODES = new Set(['ENOSPC', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE', 'EDQUOT']);

export function fileSinkError(action: string, file: string, cause: unknown): NanosyncError {
  const code = (cause as NodeJS.ErrnoException | undefined)?.code;
  const reason = code ?? (cause instanceof Error ? cause.message : String(cause));
  const hint =
    code === 'EACCES' || code === 'EPERM'
      ? ' (check that the server may write to this folder)'
      : code === 'ENOSPC'
        ? ' (the disk is full)'
        : '';
  return new NanosyncError(
    fileSinkErrors.code.FileSinkWrite,
    `file sink cannot ${action} "${file}": ${reason}${hint}`,
    {
      retriable: code !== undefined && RETRIABLE_CODES.has(code),
      cause,
      details: { file },
    },
  );
}
