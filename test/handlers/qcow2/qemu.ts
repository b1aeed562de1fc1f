/**
 * qemu-img as the oracle. Tests that need it call `qemuImgAvailable()` at
 * module level: in CI (process.env.CI set) a missing qemu-img is a loud
 * failure; elsewhere the suite is skipped with a message.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function qemuImgAvailable(): boolean {
  const ok = spawnSync('qemu-img', ['--version']).status === 0;
  if (!ok && process.env.CI) throw new Error('qemu-img is required in CI (install qemu-utils)');
  if (!ok) console.warn('qemu-img not found: skipping qcow2 interoperability tests (install qemu-utils)');
  return ok;
}

export interface RunResult {
  status: number;
  stdout: string;
  stderr: string;
}

/**
 * qemu-img sizes a LUKS keyslot's PBKDF2 by timing a first batch of
 * iterations in thread CPU time, and gives up ("Unable to get accurate CPU
 * usage") when that reads 0 ms, which happens on a loaded host. It is
 * qemu's benchmark failing, not the image: try again, a bounded number of
 * times, with growing pauses (a clean-clone CI run once saw three quick
 * retries in a row fail the same way).
 */
export const QEMU_CPU_CLOCK_FLAKE = 'Unable to get accurate CPU usage';
const FLAKE_PAUSES_MS = [0, 100, 300, 1000, 2000];

/** A synchronous pause (the callers are synchronous, like spawnSync). */
function pause(ms: number): void {
  if (ms > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

export function spawnQemuTool(tool: string, args: readonly string[]): SpawnSyncReturns<string> {
  let r = spawnSync(tool, args, { encoding: 'utf8' });
  for (const ms of FLAKE_PAUSES_MS) {
    if (r.status === 0 || !(r.stderr ?? '').includes(QEMU_CPU_CLOCK_FLAKE)) break;
    pause(ms);
    r = spawnSync(tool, args, { encoding: 'utf8' });
  }
  return r;
}

export function qemuImg(...args: string[]): RunResult {
  const r = spawnQemuTool('qemu-img', args);
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** qemu-img must succeed; throws with its output otherwise. */
export function qemuImgOk(...args: string[]): string {
  const r = qemuImg(...args);
  if (r.status !== 0) throw new Error(`qemu-img ${args.join(' ')} -> ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

export function qemuIoOk(...args: string[]): void {
  const r = spawnSync('qemu-io', args, { encoding: 'utf8' });
  if (r.status !== 0 || /error|failed/i.test(r.stderr)) throw new Error(`qemu-io ${args.join(' ')} -> ${r.status}\n${r.stderr}`);
}

/** `qemu-img check` exit status: 0 clean, 3 leaks only, 2 corruption. */
export function qemuCheck(path: string): RunResult {
  return qemuImg('check', '--output=json', path);
}

export function tempDir(prefix: string): { dir: string; path: (name: string) => string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), `tcmu-qcow2-${prefix}-`));
  return { dir, path: (name) => join(dir, name), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A small deterministic PRNG (mulberry32) so failures replay from the seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomBytes(next: () => number, n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i += 4) b.writeUInt32LE((next() * 2 ** 32) >>> 0, i);
  return b;
}

/** Compressible but not trivial: random 64-byte pieces separated by runs of one byte. */
export function mixedBytes(next: () => number, n: number): Buffer {
  const out = Buffer.alloc(n);
  for (let at = 0; at < n; ) {
    if (next() < 0.5) {
      randomBytes(next, 64).copy(out, at, 0, Math.min(64, n - at));
      at += 64;
    } else {
      const len = Math.min(n - at, 32 + Math.floor(next() * 512));
      out.fill(Math.floor(next() * 256), at, at + len);
      at += len;
    }
  }
  return out;
}
