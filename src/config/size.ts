/**
 * The one size grammar, used by the config file, the CLI (`--size`) and
 * handler options (`ram/;size=1G`), so a size written in one place works in
 * every other:
 *
 *   <digits>[.<digits>][K|M|G|T|P][B|iB]     (case-insensitive, binary units)
 *
 * e.g. `4096`, `512M`, `10GiB`, `1.5T`. Fractions must come out as whole
 * bytes (`1.5K` is 1536, `1.1K` is refused); the arithmetic is exact, never
 * floating point. Surrounding blanks are ignored.
 */
import { ConfigError } from '../backstore/config-error.js';

const SIZE = /^\s*(\d+)(?:\.(\d+))?\s*([kmgtp]?)(?:i?b)?\s*$/i;
const UNIT_POWER: Record<string, bigint> = { '': 0n, k: 10n, m: 20n, g: 30n, t: 40n, p: 50n };
/** Longer input is no size anyone means; the bound also keeps the BigInt arithmetic small. */
const MAX_SIZE_TEXT = 64;

/** The byte count `text` names (0 included), or undefined when it is not a size or beyond 2^53 - 1. */
export function sizeInBytes(text: string): number | undefined {
  if (text.length > MAX_SIZE_TEXT) return undefined;
  const m = SIZE.exec(text);
  if (!m) return undefined;
  const fraction = m[2] ?? '';
  const scale = 10n ** BigInt(fraction.length);
  const scaled = (BigInt(m[1]!) * scale + BigInt(fraction || '0')) << UNIT_POWER[m[3]!.toLowerCase()]!;
  if (scaled % scale !== 0n) return undefined;
  const bytes = scaled / scale;
  return bytes <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(bytes) : undefined;
}

/** Why `value` is not a positive byte count, or the count itself. */
export function checkPositiveSize(value: string | number): { bytes: number } | { reason: string } {
  if (typeof value === 'number') {
    return Number.isSafeInteger(value) && value > 0 ? { bytes: value } : { reason: `expected a positive integer byte count, got ${value}` };
  }
  const bytes = sizeInBytes(value);
  if (bytes === undefined) return { reason: `"${value.slice(0, MAX_SIZE_TEXT)}" is not a size (examples: 1073741824, 512M, 10G, 1.5T)` };
  if (bytes === 0) return { reason: `"${value}" is zero bytes; a size must be positive` };
  return { bytes };
}

/** A positive size for `key` (a config key or a CLI flag); throws a ConfigError naming the key. */
export function parseSize(value: string | number, key: string): number {
  const checked = checkPositiveSize(value);
  if ('reason' in checked) throw new ConfigError(`${key}: ${checked.reason}`);
  return checked.bytes;
}
