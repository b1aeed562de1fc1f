/**
 * thread_policy on a real cluster: the threads librados and librbd start for
 * a session and its image (the messenger, io_context_pool, timers, librbd's
 * finisher) run under SCHED_BATCH with 'batch' and under the daemon's own
 * policy with 'normal'; the daemon's threads, including the libuv pool
 * thread that ran the connect, keep theirs.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RbdSession, type RbdThreadPolicy } from '../../../handlers/rbd/librbd.js';
import { CONF, cephMissing, freshImage, startCluster, stopCluster } from './cluster.js';

const SCHED_OTHER = 0;
const SCHED_BATCH = 3;

/** Thread id -> [name, scheduling policy] for every thread of this process. */
function threads(): Map<string, [string, number]> {
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
const CEPH_THREAD = /^(msgr-worker-\d+|io_context_pool|ms_dispatch|ms_local|safe_timer|ceph_timer|taskfin_librbd|log|service)$/;

async function openAndWrite(policy: RbdThreadPolicy, image: string): Promise<{ before: Map<string, [string, number]>; cephThreads: Array<[string, number]>; close: () => Promise<void> }> {
  const before = threads();
  const session = await RbdSession.connect({ conf: CONF, id: 'admin', settings: {}, pool: 'rbd', threadPolicy: policy });
  const img = await session.open(image, '', false);
  // Some threads start only with the first I/O; do one of each.
  const data = Buffer.alloc(4096, 0x5a);
  await img.writev(0, [data]);
  const back = Buffer.alloc(4096);
  await img.readv(0, [back]);
  expect(back.equals(data)).toBe(true);
  const cephThreads = started(before, threads()).filter(([name]) => CEPH_THREAD.test(name));
  return {
    before,
    cephThreads,
    close: async () => {
      await img.close();
      await session.shutdown();
    },
  };
}

describe.skipIf(cephMissing !== undefined)('rbd thread_policy on a real cluster', () => {
  beforeAll(() => {
    startCluster();
  }, 300_000);
  afterAll(() => stopCluster(), 120_000);

  it('batch: every thread librados and librbd start runs under SCHED_BATCH; the daemon\'s threads keep their policy', async () => {
    const run = await openAndWrite('batch', freshImage());
    try {
      const names = run.cephThreads.map(([name]) => name);
      expect(names).toContain('io_context_pool');
      expect(names.some((n) => n.startsWith('msgr-worker-'))).toBe(true);
      expect(names).toContain('taskfin_librbd');
      expect(run.cephThreads.filter(([, policy]) => policy !== SCHED_BATCH)).toEqual([]);
      // The pool thread that ran connect and open went back to SCHED_OTHER.
      const now = threads();
      for (const [tid, [name, policy]] of run.before) {
        if (now.has(tid)) expect([name, now.get(tid)![1]]).toEqual([name, policy]);
      }
      expect([...now.values()].filter(([name, policy]) => !CEPH_THREAD.test(name) && policy !== SCHED_OTHER)).toEqual([]);
    } finally {
      await run.close();
    }
  });

  it('normal: they run under the daemon\'s own policy', async () => {
    const run = await openAndWrite('normal', freshImage());
    try {
      expect(run.cephThreads.map(([name]) => name)).toContain('io_context_pool');
      expect(run.cephThreads.filter(([, policy]) => policy !== SCHED_OTHER)).toEqual([]);
    } finally {
      await run.close();
    }
  });
});
