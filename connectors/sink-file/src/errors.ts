import { ErrorCode, NanosyncError } from '@nanosync/core';

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
  return new NanosyncError(ErrorCode.FileSinkWrite, `file sink cannot ${action} "${file}": ${reason}${hint}`, {
    retriable: code !== undefined && RETRIABLE_CODES.has(code),
    cause,
    details: { file },
  });
}
