/**
 * A configuration mistake found while opening a LUN: a malformed dev_config,
 * an unknown handler or option, a file that does not fit the LUN. Kept apart
 * from StorageError (whose codes become SCSI sense) because these failures
 * are reported to the operator and refuse the device; they never reach an
 * initiator.
 */
export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}
