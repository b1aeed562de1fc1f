/**
 * The fuzz worker process: runs cases [first, first+count) of one target and
 * reports each on stdout as `@@FUZZ {json}`. It runs in a process of its own
 * so the driver can kill it on a hang (a synchronous loop stops every timer
 * here) and survive a crash.
 */
import { readFileSync } from 'node:fs';
import { targets } from '../targets/index.js';
import { Rng } from './rng.js';
import { FuzzFinding, isCleanRefusal } from './target.js';

interface ChildArgs {
  target: string;
  seed: number;
  first: number;
  count: number;
  workDir: string;
}

const args = JSON.parse(process.argv[2]!) as ChildArgs;
let current = -1;

function report(msg: Record<string, unknown>): void {
  process.stdout.write(`@@FUZZ ${JSON.stringify(msg)}\n`);
}

/** Peak resident set size in bytes (VmHWM). */
function peakRss(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

process.on('unhandledRejection', (reason) => {
  report({ case: current, finding: 'unhandled-rejection', message: String((reason as Error)?.stack ?? reason) });
});
process.on('uncaughtException', (err) => {
  report({ case: current, finding: 'uncaught-exception', message: String(err?.stack ?? err) });
  process.exit(70);
});

const loader = targets[args.target];
if (!loader) {
  report({ fatal: `unknown target ${args.target}` });
  process.exit(2);
}
const target = await loader();
await target.setup?.(args.workDir);
report({ baseline: peakRss() });
for (let i = args.first; i < args.first + args.count; i++) {
  current = i;
  report({ case: i, start: true });
  const rng = new Rng(args.seed, i);
  let outcome: string | undefined;
  try {
    outcome = await target.runCase({ rng, index: i, workDir: args.workDir });
  } catch (err) {
    if (isCleanRefusal(err)) outcome = `refused:${err.code}`;
    else {
      const kind = err instanceof FuzzFinding ? err.kind : 'raw-error';
      report({ case: i, finding: kind, message: String((err as Error)?.stack ?? err) });
      outcome = `finding:${kind}`;
    }
  }
  // One macrotask turn: rejections the case left unhandled are reported now, against this case.
  await new Promise((r) => setImmediate(r));
  report({ case: i, outcome, peakRss: peakRss() });
}
await target.teardown?.();
// Give late rejections of the last case a chance to surface before we say done.
await new Promise((r) => setTimeout(r, 20));
report({ done: true });
process.exit(0);
