/**
 * Helpers for handlers reading their `ctx.options`. Every helper rejects
 * bad input with a ConfigError naming the handler, the key and the reason;
 * nothing is guessed or silently corrected.
 */
import { ConfigError } from './config-error.js';

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

const SIZE_SUFFIX: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40, p: 2 ** 50 };

/**
 * A byte count: digits with an optional binary suffix K, M, G, T, P
 * (case-insensitive, optionally followed by "iB" or "B"): `1G`, `512MiB`, `4096`.
 */
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)([kmgtp]?)(?:i?b)?$/i.exec(text);
  if (!match) return undefined;
  const bytes = Number(match[1]) * SIZE_SUFFIX[match[2]!.toLowerCase()]!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

/** A size option in bytes, or undefined when absent. */
export function sizeOption(handler: string, options: Options, key: string): number | undefined {
  const value = options[key];
  if (value === undefined) return undefined;
  const bytes = parseSize(value);
  if (bytes === undefined) {
    throw new ConfigError(`${handler}: option ${key}="${value}" is not a size (bytes, or a number with K, M, G, T or P)`);
  }
  return bytes;
}
