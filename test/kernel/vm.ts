// Host side of the real-kernel test bed: runs a bash scenario inside the QEMU
// guest via scripts/vm-run.sh and parses the machine-readable console lines.
// The guest script gets test/kernel/guest-lib.sh sourced in front of it.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE = process.env.TCMU_VM_CACHE ?? join(REPO, '.cache/vm');
const VM_RUN = join(REPO, 'scripts/vm-run.sh');

export interface GuestRun {
  exitCode: number;
  /** `@@RESULT key=value` lines; a key printed twice keeps both values. */
  results: Map<string, string[]>;
  /** `@@LOG name line` lines (e.g. the runner's log tail), by name. */
  logs: Map<string, string[]>;
  /** Last 60 console lines (guest output and kernel messages). */
  consoleTail: string;
  ok: boolean;
  /** vm-run's verdict: ok | fail | timeout | panic | noexit | setup */
  status: string;
  reason?: string;
  bootSec?: number;
  totalSec?: number;
}

export interface GuestOpts {
  timeoutSec?: number;
  memMiB?: number;
  smp?: number;
  scratchSize?: string;
  /** Overrides vm-run's default module list (space separated). */
  modules?: string;
}

/** Why the test bed cannot run here, or undefined when it can. */
export function testBedMissing(): string | undefined {
  if (spawnSync('sh', ['-c', 'command -v qemu-system-x86_64']).status !== 0)
    return 'qemu-system-x86_64 not installed (run: sudo scripts/setup.sh)';
  for (const f of ['vmlinuz', 'initramfs.cpio.gz', 'kver'])
    if (!existsSync(join(CACHE, f))) return `${join(CACHE, f)} missing (run: sudo scripts/setup.sh)`;
  if (process.getuid?.() !== 0) return 'the test bed needs root (9p export of /)';
  return undefined;
}

/**
 * describe() for kernel tests: outside CI a missing test bed skips with a
 * printed reason; in CI (process.env.CI set) it is a failing test instead.
 */
export function describeKernel(name: string, fn: () => void): void {
  const missing = testBedMissing();
  if (!missing) { describe(name, fn); return; }
  if (process.env.CI) {
    describe(name, () => it('has a kernel test bed', () => { throw new Error(`kernel test bed unavailable in CI: ${missing}`); }));
    return;
  }
  console.warn(`[kernel tests] skipping "${name}": ${missing}`);
  describe.skip(name, fn);
}

export function parseConsole(text: string): Pick<GuestRun, 'results' | 'logs' | 'consoleTail'> & {
  exit?: number; vm?: Record<string, string>;
} {
  const results = new Map<string, string[]>();
  const logs = new Map<string, string[]>();
  const lines = text.split('\n');
  let exit: number | undefined;
  let vm: Record<string, string> | undefined;
  const console: string[] = [];
  for (const line of lines) {
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^@@RESULT ([^=\s]+)=(.*)$/))) {
      const v = results.get(m[1]) ?? [];
      v.push(m[2].trimEnd()); // sg3-utils pads fixed-width fields with blanks
      results.set(m[1], v);
    } else if ((m = line.match(/^@@LOG (\S+) ?(.*)$/))) {
      const v = logs.get(m[1]) ?? [];
      v.push(m[2]);
      logs.set(m[1], v);
      continue; // log dumps are not console noise
    } else if ((m = line.match(/^@@EXIT (\d+)/))) {
      exit = Number(m[1]);
    } else if (line.startsWith('@@VM status=')) {
      vm = Object.fromEntries([...line.matchAll(/(\w+)=("[^"]*"|\S+)/g)].map((x) => [x[1], x[2].replace(/^"|"$/g, '')]));
      continue;
    }
    console.push(line);
  }
  while (console.length && console[console.length - 1] === '') console.pop();
  return { results, logs, consoleTail: console.slice(-60).join('\n'), exit, vm };
}

/** `KEY SECONDS` lines from guest-lib's check(), the five slowest as "key 12.3s, ...". */
export function slowestSteps(lines: readonly string[], n = 5): string {
  const steps = lines
    .map((l) => l.match(/^(\S+) ([0-9.]+)$/))
    .filter((m): m is RegExpMatchArray => m !== null)
    .map((m) => ({ key: m[1]!, sec: Number(m[2]) }));
  steps.sort((a, b) => b.sec - a.sec);
  return steps.slice(0, n).map((s) => `${s.key} ${s.sec}s`).join(', ');
}

/** Boot the VM, run `script` (bash) in it, collect its result lines. */
export async function runGuestScript(script: string, opts: GuestOpts = {}): Promise<GuestRun> {
  const missing = testBedMissing();
  if (missing) throw new Error(`kernel test bed unavailable: ${missing}`);
  const dir = mkdtempSync(join(tmpdir(), 'tcmu-vm-'));
  const file = join(dir, 'scenario.sh');
  writeFileSync(file, `. "$TCMU_TS_ROOT/test/kernel/guest-lib.sh"\n${script}\n`);
  const timeoutSec = opts.timeoutSec ?? 600;
  const args = [VM_RUN, file, '--timeout', String(timeoutSec), '--mem', String(opts.memMiB ?? 2048)];
  if (opts.smp) args.push('--smp', String(opts.smp));
  if (opts.scratchSize) args.push('--scratch-size', opts.scratchSize);
  if (opts.modules) args.push('--modules', opts.modules);
  const verbose = !!process.env.TCMU_VM_VERBOSE;
  try {
    const { out, err, code } = await new Promise<{ out: string; err: string; code: number }>((res, rej) => {
      // Own process group, killed if this process exits first (a vitest hook
      // timeout would otherwise leave QEMU running until its own timeout).
      const p = spawn('bash', args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
      const killGroup = () => { try { process.kill(-p.pid!, 'SIGTERM'); } catch { /* already gone */ } };
      process.once('exit', killGroup);
      p.on('close', () => process.removeListener('exit', killGroup));
      const o: Buffer[] = [];
      const e: Buffer[] = [];
      p.stdout.on('data', (b: Buffer) => { o.push(b); if (verbose) process.stderr.write(b); });
      p.stderr.on('data', (b: Buffer) => e.push(b));
      p.on('error', rej);
      p.on('close', (c) => res({ out: Buffer.concat(o).toString(), err: Buffer.concat(e).toString(), code: c ?? -1 }));
    });
    const parsed = parseConsole(out);
    const status = parsed.vm?.status ?? 'setup';
    const exitCode = parsed.exit ?? code;
    const ok = status === 'ok' && exitCode === 0;
    let reason: string | undefined;
    if (!ok) {
      reason = {
        timeout: `guest hung: killed after the ${timeoutSec}s timeout`,
        panic: 'guest kernel panic',
        noexit: 'guest ended without reporting @@EXIT',
        fail: `guest script exited with ${exitCode}`,
        setup: `vm-run could not start the guest: ${parsed.vm?.reason ?? err.trim().split('\n').slice(-3).join(' | ')}`,
      }[status] ?? `vm-run status ${status}`;
    }
    const num = (s?: string) => (s && !Number.isNaN(Number(s)) ? Number(s) : undefined);
    const slowest = slowestSteps(parsed.logs.get('step_sec') ?? []);
    if (slowest) console.log(`[vm] slowest checked steps: ${slowest}`);
    return {
      exitCode, results: parsed.results, logs: parsed.logs, consoleTail: parsed.consoleTail,
      ok, status, reason, bootSec: num(parsed.vm?.boot_s), totalSec: num(parsed.vm?.total_s),
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** A failure message with everything needed to debug a guest step. */
export function explain(run: GuestRun, what: string): string {
  const runner = run.logs.get('runner');
  const logs = [...run.logs].filter(([k]) => k !== 'runner').map(([k, v]) => `--- ${k} output ---\n${v.join('\n')}`);
  return [
    `${what} (vm status=${run.status}${run.reason ? `: ${run.reason}` : ''})`,
    `results: ${JSON.stringify(Object.fromEntries(run.results))}`,
    ...logs,
    runner ? `--- runner log tail ---\n${runner.join('\n')}` : '--- no runner log ---',
    `--- console tail ---\n${run.consoleTail}`,
  ].join('\n');
}

/**
 * A refusal's exit status as a scenario reports it: a number, not 0, and not
 * 124 (timeout(1) killed a command that hung instead of refusing). A bare
 * `.not.toBe('0')` would also pass when the result is missing.
 */
export const REFUSED_RC = /^(?!0$|124$)\d+$/;

/** The single value of a result key (the last one if printed twice). */
export function one(run: GuestRun, key: string): string | undefined {
  const v = run.results.get(key);
  return v ? v[v.length - 1] : undefined;
}
