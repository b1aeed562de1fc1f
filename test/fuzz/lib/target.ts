/**
 * The contract between the fuzz driver and a fuzz target. A target runs one
 * case per call, deterministically from `ctx.rng`, and returns the name of
 * the outcome class (e.g. 'refused', 'opened-rw', 'sense:05/24/00'); the
 * driver counts classes and prints them.
 *
 * How a case can fail the run:
 * - throw a FuzzFinding (the target saw something wrong: stale data, a write
 *   to an image opened read-only, a corrupted neighbour ...);
 * - throw anything that is not a clean refusal (see isCleanRefusal);
 * - crash the process, hang for more than the case timeout, grow peak RSS
 *   past the memory limit, or leave a promise rejection unhandled.
 * A clean refusal thrown out of the target counts as the class
 * `refused:<code>`; targets that expect refusals may also classify them
 * themselves with `refusalClass`.
 */
import type { Rng } from './rng.js';

export interface FuzzContext {
  rng: Rng;
  index: number;
  /** A scratch directory owned by this run (emptied by nobody: use unique names or overwrite). */
  workDir: string;
}

export interface FuzzTarget {
  name: string;
  description: string;
  /** Case counts for the short run in `npm test` and the long run by hand. */
  cases: { short: number; long: number };
  setup?(workDir: string): Promise<void>;
  runCase(ctx: FuzzContext): Promise<string>;
  teardown?(): Promise<void>;
}

export class FuzzFinding extends Error {
  constructor(
    readonly kind: string,
    message: string,
  ) {
    super(message);
    this.name = 'FuzzFinding';
  }
}

/** Node's own error texts: an input reached code that did not validate it. */
const RAW_NODE_TEXT = /ERR_[A-Z_]+|Invalid typed array length|out of range|Cannot read propert|is not a function|is not iterable|Maximum call stack|Array buffer allocation failed|undefined|NaN|\[object /;

/**
 * An error that refuses bad input cleanly: it carries a stable errno-like
 * code (StorageError, ConfigError, a Node fs errno), is not a programming
 * error class, and its message does not leak Node internals.
 */
export function isCleanRefusal(err: unknown): err is Error & { code: string } {
  if (!(err instanceof Error)) return false;
  if (err instanceof FuzzFinding) return false;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError || err instanceof ReferenceError) return false;
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !/^E[A-Z0-9]+$/.test(code)) return false;
  return !RAW_NODE_TEXT.test(err.message);
}

/** `refused:<code>` for a clean refusal; rethrows anything else (so the driver records it). */
export function refusalClass(err: unknown): string {
  if (isCleanRefusal(err)) return `refused:${err.code}`;
  throw err;
}
