/**
 * What rbd.test.ts's thread_policy and dispatch tests look at: this
 * process's threads, their scheduling policies and wake-ups from
 * /proc/self/task, and the threads librados and librbd start for one
 * session, its image and a first write and read. (Those tests live in
 * rbd.test.ts because that file owns the test cluster: a second file
 * starting and stopping it would race with it.)
 */
import { readFileSync, readdirSync } from 'node:fs';
import { expect } from 'vitest';
import type { RbdThreadPolicy } from '../../../handlers/rbd/librbd.js';
import { withImage } from './session.js';

export const SCHED_OTHER = 0;
export const SCHED_BATCH = 3;

/** Thread id -> [name, scheduling policy] for every thread of this process. */
export function threads(): Map<string, [string, number]> {
  const out = new Map<string, [string, number]>();
  for (const tid of readdirSync('/proc/self/task')) {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // exited meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    // Fields after "(comm) ": state is field 3, policy field 41.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.set(tid, [name, Number(fields[41 - 3])]);
  }
  return out;
}

/** Threads in `after` that were not in `before`, by name, with their policies. */
function started(before: Map<string, [string, number]>, after: Map<string, [string, number]>): Array<[string, number]> {
  return [...after].filter(([tid]) => !before.has(tid)).map(([, t]) => t);
}

/** Names librados and librbd give their threads (Ceph 16). */
export const CEPH_THREAD = /^(msgr-worker-\d+|io_context_pool|ms_dispatch|ms_local|safe_timer|ceph_timer|taskfin_librbd|log|service)$/;

export interface ThreadsRun {
  /** This process's threads before the session. */
  before: Map<string, [string, number]>;
  /** The Ceph threads the session, its image and a first write and read started: name and policy. */
  cephThreads: Array<[string, number]>;
}

/** Open a fresh session on `image` with `policy`, write and read once, and hand `inspect` the threads it started (while it is open). */
export async function openAndWrite(policy: RbdThreadPolicy, image: string, inspect: (run: ThreadsRun) => void): Promise<void> {
  const before = threads();
  // Through the dev_config parser, as the handler connects: with its default
  // dispatch=inline the first I/O runs librbd's dispatch on this thread, and
  // a thread librbd starts there would not inherit the policy.
  await withImage(image, { thread_policy: policy }, async (img) => {
    // Some threads start only with the first I/O; do one of each.
    const data = Buffer.alloc(4096, 0x5a);
    await img.writev(0, [data]);
    const back = Buffer.alloc(4096);
    await img.readv(0, [back]);
    expect(back.equals(data)).toBe(true);
    inspect({ before, cephThreads: started(before, threads()).filter(([name]) => CEPH_THREAD.test(name)) });
  });
}

/** Voluntary context switches (wake-ups after sleeping) of thread `tid` so far. */
function wakeups(tid: string): number {
  const status = readFileSync(`/proc/self/task/${tid}/status`, 'utf8');
  return Number(/^voluntary_ctxt_switches:\s*(\d+)$/m.exec(status)?.[1] ?? Number.NaN);
}

/**
 * Wake-ups of the session's io_context_pool threads per read, over `reads`
 * sequential 4 KiB reads (one in flight: each finds those threads asleep)
 * on a session made as `dispatch` says (through the dev_config parser, as
 * the handler does).
 */
export async function ioContextWakeupsPerRead(dispatch: 'inline' | 'queued', image: string, reads: number): Promise<number> {
  const before = threads();
  return withImage(image, { dispatch, thread_policy: 'normal' }, async (img) => {
    const buf = Buffer.alloc(4096);
    await img.writev(0, [buf]);
    await img.readv(0, [buf]);
    const pool = [...threads()].filter(([tid, [name]]) => !before.has(tid) && name === 'io_context_pool').map(([tid]) => tid);
    expect(pool.length).toBeGreaterThan(0);
    const sum = () => pool.reduce((n, tid) => n + wakeups(tid), 0);
    const start = sum();
    for (let i = 0; i < reads; i++) await img.readv(((i * 7) % 256) * 4096, [buf]);
    return (sum() - start) / reads;
  });
}
