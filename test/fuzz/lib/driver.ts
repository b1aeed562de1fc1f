/**
 * Runs a fuzz target in worker processes and judges the run. A case that
 * crashes the worker, hangs past `caseTimeoutMs`, pushes peak RSS more than
 * `memLimitMiB` over the worker's baseline, leaves a rejection unhandled or
 * throws anything but a clean refusal is a finding; after a crash or a hang
 * a new worker carries on with the next case, so one run counts them all.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';

/** Worker start-up plus the target's setup (seed images made by external tools on a loaded machine). */
const SETUP_TIMEOUT_MS = 120_000;
import { fileURLToPath } from 'node:url';

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const CHILD = join(REPO, 'test/fuzz/lib/child.ts');

export interface FuzzFindingReport {
  case: number;
  kind: string;
  message: string;
}

export interface FuzzReport {
  target: string;
  seed: number;
  cases: number;
  outcomes: Map<string, number>;
  findings: FuzzFindingReport[];
  seconds: number;
}

export interface FuzzRunOptions {
  target: string;
  seed: number;
  cases: number;
  first?: number;
  caseTimeoutMs?: number;
  memLimitMiB?: number;
  /** Called with each finding as it happens (the CLI prints them). */
  onFinding?: (f: FuzzFindingReport) => void;
}

interface ChildMsg {
  case?: number;
  start?: boolean;
  outcome?: string;
  finding?: string;
  message?: string;
  peakRss?: number;
  baseline?: number;
  done?: boolean;
  fatal?: string;
}

export async function runFuzz(opts: FuzzRunOptions): Promise<FuzzReport> {
  const started = Date.now();
  const timeoutMs = opts.caseTimeoutMs ?? 10_000;
  const memLimit = (opts.memLimitMiB ?? 256) * 2 ** 20;
  const report: FuzzReport = { target: opts.target, seed: opts.seed, cases: 0, outcomes: new Map(), findings: [], seconds: 0 };
  const workDir = mkdtempSync(join(tmpdir(), `tcmu-fuzz-${opts.target}-`));
  const add = (f: FuzzFindingReport) => {
    report.findings.push(f);
    opts.onFinding?.(f);
  };
  const count = (outcome: string) => report.outcomes.set(outcome, (report.outcomes.get(outcome) ?? 0) + 1);
  let next = opts.first ?? 0;
  const end = next + opts.cases;
  try {
    while (next < end) {
      const { resumeAt, finished } = await runChild(opts, next, end - next, workDir, timeoutMs, memLimit, add, count);
      if (resumeAt === next && !finished) throw new Error(`fuzz target ${opts.target}: the worker died before its first case (see findings)`);
      report.cases += resumeAt - next;
      next = resumeAt;
      if (finished) break;
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  report.seconds = (Date.now() - started) / 1000;
  return report;
}

function runChild(
  opts: FuzzRunOptions,
  first: number,
  n: number,
  workDir: string,
  timeoutMs: number,
  memLimit: number,
  add: (f: FuzzFindingReport) => void,
  count: (outcome: string) => void,
): Promise<{ resumeAt: number; finished: boolean }> {
  return new Promise((resolveRun, rejectRun) => {
    const args = JSON.stringify({ target: opts.target, seed: opts.seed, first, count: n, workDir });
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let lastDone = first - 1;
    let running = -1;
    let finished = false;
    let baseline = 0;
    let stderrTail = '';
    let pending = '';
    let timer: NodeJS.Timeout | undefined;
    let killed = false;
    const kill = () => {
      killed = true;
      child.kill('SIGKILL');
    };
    const arm = (ms = timeoutMs) => {
      clearTimeout(timer);
      timer = setTimeout(() => {
        add({ case: running, kind: 'hang', message: `no progress for ${ms} ms` });
        count('finding:hang');
        kill();
      }, ms);
    };
    // Also bounds start-up and setup, which may spawn qemu-img/cryptsetup to make seeds: more time there.
    arm(Math.max(timeoutMs, SETUP_TIMEOUT_MS));
    child.stderr.on('data', (d: Buffer) => (stderrTail = (stderrTail + d.toString()).slice(-4000)));
    child.stdout.on('data', (d: Buffer) => {
      pending += d.toString();
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        // After a kill, lines the worker had already written are not ours to judge.
        if (killed || !line.startsWith('@@FUZZ ')) continue;
        const msg = JSON.parse(line.slice(7)) as ChildMsg;
        if (msg.fatal) {
          clearTimeout(timer);
          kill();
          rejectRun(new Error(`fuzz target ${opts.target}: ${msg.fatal}`));
          return;
        }
        if (msg.baseline !== undefined) baseline = msg.baseline;
        if (msg.start) {
          running = msg.case!;
          arm();
        }
        if (msg.finding) add({ case: msg.case!, kind: msg.finding, message: msg.message ?? '' });
        if (msg.outcome !== undefined) {
          count(msg.outcome);
          lastDone = msg.case!;
          if (baseline && msg.peakRss! - baseline > memLimit) {
            add({ case: msg.case!, kind: 'memory', message: `peak RSS grew by ${((msg.peakRss! - baseline) / 2 ** 20).toFixed(0)} MiB` });
            // Peak RSS never falls: a fresh worker keeps later cases measurable.
            kill();
          }
        }
        if (msg.done) finished = true;
      }
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (!finished && running > lastDone && !killed) {
        add({ case: running, kind: 'crash', message: `worker exited (code ${code}, signal ${signal}): ${stderrTail.slice(-1500)}` });
        count('finding:crash');
      } else if (!finished && running <= lastDone && !killed) {
        add({ case: lastDone + 1, kind: 'crash', message: `worker exited between cases (code ${code}, signal ${signal}): ${stderrTail.slice(-1500)}` });
      }
      if (finished && lastDone < first + n - 1) {
        add({ case: lastDone + 1, kind: 'lost-cases', message: 'worker said done before running every case' });
      }
      // A case that was running when the worker died or hung counts as run (its finding is recorded).
      resolveRun({ resumeAt: finished ? first + n : running > lastDone ? running + 1 : lastDone + 1, finished });
    });
  });
}

/** A printed table: outcome classes with counts, then findings. */
export function formatReport(r: FuzzReport): string {
  const lines = [`fuzz ${r.target}: seed ${r.seed}, ${r.cases} cases in ${r.seconds.toFixed(1)} s, ${r.findings.length} findings`];
  const rows = [...r.outcomes.entries()].sort((a, b) => b[1] - a[1]);
  const width = Math.max(10, ...rows.map(([k]) => k.length));
  for (const [k, v] of rows) lines.push(`  ${k.padEnd(width)} ${String(v).padStart(7)}`);
  for (const f of r.findings.slice(0, 20)) lines.push(`  FINDING case ${f.case} ${f.kind}: ${f.message.split('\n').slice(0, 3).join(' | ')}`);
  if (r.findings.length > 20) lines.push(`  ... ${r.findings.length - 20} more findings`);
  return lines.join('\n');
}
