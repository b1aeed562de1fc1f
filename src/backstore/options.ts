/**
 * Helpers for handlers reading their `ctx.options`. Every helper rejects
 * bad input with a ConfigError naming the handler, the key and the reason;
 * nothing is guessed or silently corrected.
 */
import { ConfigError } from './config-error.js';
import { sizeInBytes } from '../config/size.js';

/** The size grammar shared with the config file and the CLI (src/config/size.ts). */
export { sizeInBytes } from '../config/size.js';

type Options = Readonly<Record<string, string>>;

/** Refuse keys the handler does not know (a typo must not be ignored). */
export function rejectUnknownOptions(handler: string, options: Options, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      const allowed = known.length ? known.join(', ') : 'none';
      throw new ConfigError(`${handler}: unknown option "${key}" (allowed: ${allowed})`);
    }
  }
}

/** `1`/`true`/`yes` or `0`/`false`/`no`; `fallback` when absent. */
export function booleanOption(handler: string, options: Options, key: string, fallback: boolean): boolean {
  const value = options[key];
  if (value === undefined) return fallback;
  switch (value) {
    case '1':
    case 'true':
    case 'yes':
      return true;
    case '0':
    case 'false':
    case 'no':
      return false;
    default:
      throw new ConfigError(`${handler}: option ${key}="${value}" is not a boolean (use 1 or 0)`);
  }
}

/** A size option in bytes, or undefined when absent. */
export function sizeOption(handler: string, options: Options, key: string): number | undefined {
  const value = options[key];
  if (value === undefined) return undefined;
  const bytes = sizeInBytes(value);
  if (bytes === undefined) {
    throw new ConfigError(`${handler}: option ${key}="${value}" is not a size (bytes, or a number with K, M, G, T or P, e.g. 512M or 1.5G)`);
  }
  return bytes;
}
