/**
 * The one ConfigError: every configuration mistake, wherever it is found —
 * the config file (src/config/config.ts), a dev_config or stack string, a
 * handler's options, a user handler module. Kept apart from StorageError
 * (whose codes become SCSI sense) because these failures are reported to
 * the operator and refuse the device; they never reach an initiator.
 *
 * Messages name the thing that is wrong first (the file and key, the
 * dev_config layer, the handler and option) and then the reason.
 */
export class ConfigError extends Error {
  readonly code = 'ECONFIG';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }

  /** `<where>: <key>: <reason>`, the form of every config file refusal (`where` is the file, or file:line:column). */
  static at(where: string, key: string, reason: string): ConfigError {
    return new ConfigError(`${where}: ${key}: ${reason}`);
  }
}
