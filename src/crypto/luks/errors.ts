/**
 * Errors from reading, unlocking and writing LUKS headers. Every message
 * names the image (`where`) and the field or feature; none ever contains key
 * material (keys are Buffers that never reach a message).
 *
 * Codes: ECORRUPT (the header is malformed: cryptsetup would refuse it too),
 * ENOTSUP (a valid header using a feature tcmu-ts does not implement: we
 * refuse rather than guess), EKEYREJECTED (no keyslot opens with the key),
 * EINVAL (a bad argument from the caller).
 */
export type LuksErrorCode = 'ECORRUPT' | 'ENOTSUP' | 'EKEYREJECTED' | 'EINVAL';

export class LuksError extends Error {
  constructor(
    readonly code: LuksErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'LuksError';
  }
}

export function corrupt(where: string, what: string): LuksError {
  return new LuksError('ECORRUPT', `${where}: LUKS header is invalid: ${what}`);
}

export function unsupported(where: string, what: string): LuksError {
  return new LuksError('ENOTSUP', `${where}: ${what} is not supported by tcmu-ts (refusing rather than guessing)`);
}
