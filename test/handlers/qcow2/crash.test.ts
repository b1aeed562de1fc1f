/**
 * Crash consistency: a child process writes (concurrent batches, discards,
 * flushes) and is SIGKILLed after a random number of acknowledged ops, while
 * its next batch is in flight, 200 times over 4 images of different geometry,
 * plus a lane that never flushes, and 200 times more with compressed writes
 * and online compaction (zstd and zlib). After every kill:
 * - `qemu-img check` finds no corruption (leaks are allowed: exit 0 or 3);
 * - the image opens (read-write) with our handler;
 * - every sector holds what the last ACKNOWLEDGED op on it put there (data,
 *   or zeros for a discard: a killed daemon keeps what it acknowledged, the
 *   page cache holds it), or the data of an op that was in flight at the
 *   kill (which may or may not have landed), never anything else;
 * and every 10 kills our leak repair brings `qemu-img check` to exit 0.
 * The kill point is counted in acknowledgements, not milliseconds, so what
 * the run covers does not depend on how fast the machine is.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkImage, createImage, openImage } from '../../../handlers/qcow2/api.js';
import { decodeSector, describeSector, fillPattern, SECTOR } from './crash-pattern.js';
import { qemuCheck, qemuImgAvailable, rng, tempDir } from './qemu.js';
import { childScriptArgs } from '../../child-script.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('crash');
afterAll(() => tmp.cleanup());

// Built by `npm run build` (tsconfig.json lists it) and started from dist/ when current.
const WRITER = childScriptArgs(fileURLToPath(new URL('./crash-writer.mts', import.meta.url)));
const SIZE = 8 << 20;
const KILLS_PER_LANE = 50;
/** Kill after 1..MAX_ACKS_BEFORE_KILL acknowledgements (random per kill). */
const MAX_ACKS_BEFORE_KILL = 150;

interface Op {
  id: number;
  kind: 'W' | 'D';
  offset: number;
  length: number;
}

interface Run {
  ops: Op[];
  acked: Set<number>;
  flushedUpTo: number;
  /** The signal the child died of, as the OS reported it ('SIGKILL' when our kill landed). */
  exitSignal: NodeJS.Signals | null;
  /** Acknowledgements the parent had seen on stdout when it sent the kill (0: never sent). */
  acksAtKill: number;
}

/**
 * Run the writer until it has reported `killAfterAcks` acknowledgements on
 * stdout, then SIGKILL it; returns its op log parsed and how it died. A child
 * that exits before the kill point rejects with its stderr.
 */
function runAndKill(path: string, firstId: number, seed: number, killAfterAcks: number, flushProbability: number, compress = ''): Promise<Run> {
  const logPath = `${path}.log`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...WRITER.args, path, logPath, String(firstId), String(seed), String(flushProbability), compress], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let out = '';
    let acks = 0;
    let acksAtKill = 0;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const lines = out.split('\n');
      out = lines.pop()!;
      for (const line of lines) if (line.startsWith('A ')) acks++;
      if (acksAtKill === 0 && acks >= killAfterAcks && child.kill('SIGKILL')) acksAtKill = acks;
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (acksAtKill === 0) return reject(new Error(`writer exited on its own (${signal ?? code}) after ${acks} acks, before the kill point ${killAfterAcks}: ${stderr}`));
      const ops: Op[] = [];
      const acked = new Set<number>();
      let flushedUpTo = firstId;
      for (const line of readFileSync(logPath, 'utf8').split('\n')) {
        const [tag, a, b, c] = line.split(' ');
        if (tag === 'W' || tag === 'D') ops.push({ kind: tag, id: Number(a), offset: Number(b), length: Number(c) });
        else if (tag === 'A') acked.add(Number(a));
        else if (tag === 'F') flushedUpTo = Number(a);
      }
      resolve({ ops, acked, flushedUpTo, exitSignal: signal, acksAtKill });
    });
  });
}

/** Sector -> op id it must hold (0 = zeros), given the state before and the durable ops. */
function applyOps(state: Int32Array, ops: Op[]): void {
  for (const op of ops) state.fill(op.kind === 'W' ? op.id : 0, op.offset / SECTOR, (op.offset + op.length) / SECTOR);
}

async function readSectors(path: string): Promise<Int32Array> {
  const img = await openImage(path, { readOnly: false });
  try {
    const all = Buffer.alloc(img.size);
    await img.read(0, [all]);
    const out = new Int32Array(img.size / SECTOR);
    for (let s = 0; s < out.length; s++) out[s] = decodeSector(all.subarray(s * SECTOR, (s + 1) * SECTOR), s);
    return out;
  } finally {
    await img.close();
  }
}

/**
 * For a failure message: what the bad sector holds, where its guest cluster
 * maps, and every op of the run on that cluster (a wrong sector usually
 * comes from a cluster-level event: a copy, a free, a reuse).
 */
async function forensics(path: string, s: number, ops: Op[], acked: Set<number>): Promise<string> {
  const img = await openImage(path, { readOnly: true });
  try {
    const cs = img.clusterSize;
    const gc = Math.floor((s * SECTOR) / cs);
    const buf = Buffer.alloc(SECTOR);
    await img.read(s * SECTOR, [buf]);
    const e = await img.entryAt(gc);
    const onCluster = ops
      .filter((o) => o.offset < (gc + 1) * cs && gc * cs < o.offset + o.length)
      .map((o) => `${o.kind}${o.id}${acked.has(o.id) ? '(acked)' : ''}@${o.offset / SECTOR}+${o.length / SECTOR}`);
    // A host cluster mapped twice, or freed while mapped, is how foreign data usually gets in.
    const sharers: number[] = [];
    if (e.host !== 0) {
      for (let other = 0; other * cs < img.size; other++) if (other !== gc && (await img.entryAt(other)).host === e.host) sharers.push(other);
    }
    const refcount = e.host !== 0 ? await img.refcounts.get(e.host / cs) : '-';
    return (
      `  sector ${s}: ${describeSector(buf)}; guest cluster ${gc} (sectors ${(gc * cs) / SECTOR}..${((gc + 1) * cs) / SECTOR - 1}) maps ${JSON.stringify(e)}` +
      ` (host refcount ${refcount}, also mapped by guest clusters: ${sharers.join(' ') || 'none'}); ops of this run on it: ${onCluster.join(' ') || 'none'}`
    );
  } catch (err) {
    return `  (forensics failed: ${String(err)})`;
  } finally {
    await img.close();
  }
}

interface Lane {
  name: string;
  setup: (path: string) => Promise<Int32Array>;
  kills: number;
  /** Chance of a flush after each batch: 0 = only the ack-time write-back keeps anything. */
  flushProbability: number;
  /**
   * The writer stores data compressed (compress=...) and compacts the live
   * image now and then; '+stage' stores partial writes uncompressed and the
   * compactions compress them (staging.ts).
   */
  compress?: 'zlib' | 'zstd' | 'zstd+stage';
}
const fresh = (clusterSize: number, version?: 2 | 3, compressionType?: 'zlib' | 'zstd') => async (p: string) => {
  await createImage(p, { size: SIZE, clusterSize, version, compressionType });
  return new Int32Array(SIZE / SECTOR);
};

const lanes: Lane[] = [
  { name: 'v3 4k', setup: fresh(4096), kills: KILLS_PER_LANE, flushProbability: 0.3 },
  { name: 'v2 64k', setup: fresh(65536, 2), kills: KILLS_PER_LANE, flushProbability: 0.3 },
  { name: 'v3 16k', setup: fresh(16384), kills: KILLS_PER_LANE, flushProbability: 0.3 },
  {
    name: 'v3 32k over a raw base',
    setup: async (p) => {
      const base = `${p}.base`;
      const data = Buffer.alloc(SIZE);
      fillPattern(data, 1, 0);
      writeFileSync(base, data);
      await createImage(p, { size: SIZE, clusterSize: 32768, backing: base, backingFormat: 'raw' });
      return new Int32Array(SIZE / SECTOR).fill(1);
    },
    kills: KILLS_PER_LANE,
    flushProbability: 0.3,
  },
  // Never flushed: every surviving byte and zero is there only because it
  // reached the page cache before its acknowledgement.
  { name: 'v3 64k, no flush ever', setup: fresh(65536), kills: 20, flushProbability: 0 },
];

const compressedLanes: Lane[] = [
  // Compressed writes (packed payloads, read-modify-write) with online compaction running alongside;
  // the 64k lane stages partial writes uncompressed and its compactions compress them.
  { name: 'v3 64k zstd compressed, staged + compaction', setup: fresh(65536, 3, 'zstd'), kills: 2 * KILLS_PER_LANE, flushProbability: 0.3, compress: 'zstd+stage' },
  { name: 'v3 4k zlib compressed + compaction', setup: fresh(4096, 3, 'zlib'), kills: 2 * KILLS_PER_LANE, flushProbability: 0.3, compress: 'zlib' },
];

interface LaneResult {
  /** Runs whose child the OS reported dead of SIGKILL. */
  kills: number;
  /** Kills after at least one completed flush in that run. */
  flushesSeen: number;
  /** Kills with acknowledged writes no flush covered yet (durable only by the ack-time rule). */
  unflushedAckedSeen: number;
  opsSeen: number;
  ackedSeen: number;
  /** Sum of the ack counts the kills were planned at (a lower bound for ackedSeen). */
  plannedAcks: number;
}

async function runLane(lane: Lane, index: number): Promise<LaneResult> {
  const path = tmp.path(`crash-${index}.qcow2`);
  let state = await lane.setup(path);
  const next = rng(4242 + index);
  let nextId = 10;
  const result: LaneResult = { kills: 0, flushesSeen: 0, unflushedAckedSeen: 0, opsSeen: 0, ackedSeen: 0, plannedAcks: 0 };
  for (let kill = 1; kill <= lane.kills; kill++) {
    const target = 1 + Math.floor(next() * MAX_ACKS_BEFORE_KILL);
    const { ops, acked, flushedUpTo, exitSignal, acksAtKill } = await runAndKill(path, nextId, Math.floor(next() * 2 ** 31), target, lane.flushProbability, lane.compress);
    expect(exitSignal, `${lane.name} kill ${kill}: the writer died of ${exitSignal}, not of our SIGKILL`).toBe('SIGKILL');
    if (exitSignal === 'SIGKILL') result.kills++;
    expect(acksAtKill, `${lane.name} kill ${kill}: killed before ${target} acks`).toBeGreaterThanOrEqual(target);
    expect(acked.size, `${lane.name} kill ${kill}: the log has fewer acks than stdout announced`).toBeGreaterThanOrEqual(acksAtKill);
    result.plannedAcks += target;
    result.ackedSeen += acked.size;
    result.opsSeen += ops.length;
    if (flushedUpTo > nextId) result.flushesSeen++;
    if (ops.some((o) => o.kind === 'W' && acked.has(o.id) && o.id > flushedUpTo)) result.unflushedAckedSeen++;
    const check = qemuCheck(path);
    const report = JSON.parse(check.stdout || '{}') as { corruptions?: number };
    expect(check.status === 0 || check.status === 3, `${lane.name} kill ${kill}: qemu-img check ${check.status}\n${check.stdout}${check.stderr}`).toBe(true);
    expect(report.corruptions ?? 0).toBe(0);

    // Ops of a batch are disjoint and a batch starts only when the previous
    // one is all acknowledged, so an op that was not acknowledged belongs to
    // the last batch, and no acknowledged op overlapping it comes after it.
    const durable = Int32Array.from(state);
    applyOps(durable, ops.filter((o) => acked.has(o.id) || o.id <= flushedUpTo));
    // Sectors an op in flight at the kill touched may hold its data (or zeros, for a discard).
    const maybe = new Map<number, Set<number>>();
    for (const op of ops.filter((o) => !acked.has(o.id) && o.id > flushedUpTo)) {
      for (let s = op.offset / SECTOR; s < (op.offset + op.length) / SECTOR; s++) {
        let set = maybe.get(s);
        if (!set) maybe.set(s, (set = new Set()));
        set.add(op.kind === 'W' ? op.id : 0);
      }
    }
    const actual = await readSectors(path);
    for (let s = 0; s < actual.length; s++) {
      if (actual[s] === durable[s] || maybe.get(s)?.has(actual[s]!)) continue;
      const touching = ops.filter((o) => o.offset <= s * SECTOR && s * SECTOR < o.offset + o.length).map((o) => `${o.kind}${o.id}${acked.has(o.id) ? '(acked)' : ''}`);
      throw new Error(
        `${lane.name} kill ${kill}: sector ${s} holds op ${actual[s]}, expected ${durable[s]} (flushed up to ${flushedUpTo}, first id ${nextId}, ops here: ${touching.join(' ')}; op ${actual[s]}: ${JSON.stringify(ops.find((o) => o.id === actual[s]))}, ${ops.length} ops up to ${ops[ops.length - 1]?.id})\n` +
          (await forensics(path, s, ops, acked)),
      );
    }
    state = actual;
    nextId = Math.max(nextId, ...ops.map((o) => o.id)) + 1;
    if (kill % 10 === 0) {
      const fixed = await checkImage(path, { repair: 'leaks' });
      expect(fixed.corruptions).toBe(0);
      expect(qemuCheck(path).status).toBe(0);
    }
  }
  return result;
}

describe.skipIf(!hasQemu)('crash consistency under SIGKILL', () => {
  for (const [title, group, base] of [
    ['', lanes, 0],
    [' with compressed writes and online compaction', compressedLanes, 100],
  ] as const) {
    const planned = group.reduce((n, l) => n + l.kills, 0);
    it(`${planned} kills after random numbers of acknowledged ops${title}: no corruption, acknowledged data and discards survive`, async () => {
      // All lanes at once: each mostly waits on a child starting up or being
      // killed. allSettled: a failing lane must not leave the others running
      // (and failing) after the test has ended.
      const settled = await Promise.allSettled(group.map((lane, i) => runLane(lane, base + i)));
      const failed = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason as unknown] : []));
      if (failed.length) throw failed[0];
      const results = settled.map((r) => (r as PromiseFulfilledResult<LaneResult>).value);
      const sum = (f: (r: LaneResult) => number, rs = results) => rs.reduce((n, r) => n + f(r), 0);
      console.log(
        `[crash${title}] writer ${WRITER.built ? 'from dist/' : 'through tsx (no current build)'}; kills ${sum((r) => r.kills)}, ops issued ${sum((r) => r.opsSeen)}, acknowledged ${sum((r) => r.ackedSeen)}, kills after a flush ${sum((r) => r.flushesSeen)}, kills with acknowledged unflushed writes ${sum((r) => r.unflushedAckedSeen)}`,
      );
      // Every planned run ended with the OS reporting the child dead of SIGKILL.
      expect(sum((r) => r.kills)).toBe(planned);
      expect(planned).toBeGreaterThanOrEqual(200);
      // Acknowledgements before the kills: at least what was planned (the kill
      // point is an ack count the writer reported, not a time).
      expect(sum((r) => r.ackedSeen)).toBeGreaterThanOrEqual(sum((r) => r.plannedAcks));
      // Both durability rules were exercised in every lane that can exercise
      // them: a kill after a completed flush (flushed data must read back) and
      // a kill with acknowledged writes no flush covered (the ack-time rule).
      // The writer's choices come from seeded PRNGs and the kill point is an
      // ack count, so these counts do not depend on the machine's speed.
      group.forEach((lane, i) => {
        const r = results[i]!;
        if (lane.flushProbability > 0) expect(r.flushesSeen, `${lane.name}: kills after a flush`).toBeGreaterThan(0);
        expect(r.unflushedAckedSeen, `${lane.name}: kills with acknowledged, unflushed writes`).toBeGreaterThan(0);
      });
    }, 600_000);
  }
});
