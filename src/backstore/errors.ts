/**
 * Errors a handler throws. The core maps `code` to SCSI sense in one place
 * (src/scsi/sense-map.ts). Node's fs errors already carry errno codes
 * ('EIO', 'ENOSPC', ...) and are mapped the same way, so handlers may let
 * them propagate.
 */
export type StorageErrorCode =
  | 'EIO' // medium error: read -> 03/11/00, write -> 03/0C/00
  | 'ENOSPC' // space allocation failed -> 07/27/07
  | 'EROFS' // write protected -> 07/27/00
  | 'ERANGE' // LBA out of range -> 05/21/00
  | 'EINVAL' // invalid field in CDB -> 05/24/00
  | 'ENOTSUP' // operation not supported by this store -> 05/20/00 or 05/24/00
  | 'EMISCOMPARE' // COMPARE AND WRITE / VERIFY mismatch -> 0E/1D/00
  | 'ECANCELED' // aborted by a task management function
  | 'ETIMEDOUT' // handler did not answer in time -> 0B/00/00 (retryable)
  | 'ECORRUPT'; // image metadata corrupt -> 03/11/00 / 03/0C/00, image goes read-only

export class StorageError extends Error {
  readonly code: StorageErrorCode;
  constructor(code: StorageErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StorageError';
    this.code = code;
  }
}

/** The `code` of anything thrown, or 'EIO' when it has none. */
export function errorCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') {
    return (err as { code: string }).code;
  }
  return 'EIO';
}

/**
 * True for the ways a store says "I stopped because my signal was aborted":
 * the signal's own reason (a StorageError 'ECANCELED'), Node's AbortError
 * (code 'ABORT_ERR', from fs and timers APIs given the signal) or a DOM
 * AbortError (`signal.throwIfAborted()` with a default reason).
 */
export function isAbortError(err: unknown): boolean {
  if (!err || typeof err !== 'object') return false;
  const code = (err as { code?: unknown }).code;
  return code === 'ECANCELED' || code === 'ABORT_ERR' || (err as { name?: unknown }).name === 'AbortError';
}
