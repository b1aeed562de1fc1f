/**
 * Host-side qcow2 write-path micro-benchmark (no kernel, no VM): the cost of
 * writing metadata back before each acknowledgement. Through the backstore
 * on a tmp-file image (v3, 64 KiB clusters), queue depth 32:
 *   alloc4k     4k writes, each into a never-written cluster (random order)
 *   inplace4k   4k random writes into allocated clusters
 *   discard64k  whole-cluster UNMAPs of allocated clusters (random order)
 * Usage: node --import tsx scripts/bench-host/qcow2-alloc.mts [ROOT ...]
 *   ROOT: a tree holding handlers/ and src/ (default: this checkout), e.g. an
 *   older commit unpacked with `git archive` to compare before/after; the
 *   trees take turns, ROUNDS (env, 3) times. Prints ops/s per tree and job.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = resolve(fileURLToPath(new URL('../..', import.meta.url)));
const roots = process.argv.length > 2 ? process.argv.slice(2).map((r) => resolve(r)) : [here];
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const CLUSTERS = Number(process.env.CLUSTERS ?? 8192);
const QD = 32;
const CS = 65536;

function shuffled(n: number, seed: number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  let s = seed >>> 0;
  for (let i = n - 1; i > 0; i--) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const j = s % (i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

async function qd(n: number, op: (i: number) => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(Array.from({ length: QD }, async () => { while (next < n) await op(next++); }));
  return n / (Number(process.hrtime.bigint() - t0) / 1e9);
}

async function bench(root: string, dir: string, round: number): Promise<Record<string, number>> {
  const api = await import(join(root, 'handlers/qcow2/api.ts'));
  const { Qcow2Backstore } = await import(join(root, 'handlers/qcow2/backstore.ts'));
  const path = join(dir, `r${round}.qcow2`);
  rmSync(path, { force: true });
  await api.createImage(path, { size: CLUSTERS * CS, clusterSize: CS });
  const store = new Qcow2Backstore(await api.openImage(path, { readOnly: false }), 512);
  const buf = Buffer.alloc(4096, 0xa5);
  const order = shuffled(CLUSTERS, 7 + round);
  const out: Record<string, number> = {};
  out.alloc4k = await qd(CLUSTERS, (i) => store.write(order[i]! * CS, [buf], { fua: false }));
  const rnd = shuffled(CLUSTERS * 16, 11 + round);
  out.inplace4k = await qd(CLUSTERS * 2, (i) => store.write((Math.floor(rnd[i]! / 16) * CS), [buf], { fua: false }));
  out.discard64k = await qd(CLUSTERS, (i) => store.discard(order[(i * 7919) % CLUSTERS]! * CS, CS));
  await store.close();
  rmSync(path, { force: true });
  return out;
}

const dir = mkdtempSync(join(tmpdir(), 'qcow2-alloc-bench-'));
const results = new Map<string, Record<string, number[]>>();
try {
  for (let round = 0; round < ROUNDS; round++) {
    for (const root of roots) {
      const r = await bench(root, dir, round);
      const acc = results.get(root) ?? {};
      for (const [k, v] of Object.entries(r)) (acc[k] ??= []).push(v);
      results.set(root, acc);
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
console.log(`# qcow2 host write path, v3 64k clusters, ${CLUSTERS} clusters, qd${QD}, ${ROUNDS} rounds (median ops/s; all rounds)`);
for (const [root, acc] of results) {
  for (const [job, v] of Object.entries(acc)) console.log(`${job.padEnd(11)} ${String(Math.round(median(v))).padStart(7)}  [${v.map(Math.round).join(' ')}]  ${root}`);
}
