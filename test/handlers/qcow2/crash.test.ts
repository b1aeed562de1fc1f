/**
 * Crash consistency: a child process writes (concurrent batches, discards,
 * flushes) and is SIGKILLed at a random moment, 200 times over 4 images of
 * different geometry. After every kill:
 * - `qemu-img check` finds no corruption (leaks are allowed: exit 0 or 3);
 * - the image opens (read-write) with our handler;
 * - every sector holds what the last completed flush guarantees, or the
 *   data of an op issued after that flush (which may or may not have landed),
 *   never anything else;
 * and every 10 kills our leak repair brings `qemu-img check` to exit 0.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { checkImage, createImage, openImage } from '../../../handlers/qcow2/api.js';
import { decodeSector, fillPattern, SECTOR } from './crash-pattern.js';
import { qemuCheck, qemuImgAvailable, rng, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('crash');
afterAll(() => tmp.cleanup());

const WRITER = fileURLToPath(new URL('./crash-writer.mts', import.meta.url));
const SIZE = 8 << 20;
const KILLS_PER_LANE = 50;

interface Op {
  id: number;
  kind: 'W' | 'D';
  offset: number;
  length: number;
}

/** Run the writer until a random kill; returns its op log parsed. */
function runAndKill(path: string, firstId: number, seed: number, killAfterMs: number): Promise<{ ops: Op[]; flushedUpTo: number }> {
  const logPath = `${path}.log`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', WRITER, path, logPath, String(firstId), String(seed)], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    let ready = false;
    child.stderr.on('data', (d) => (stderr += d));
    child.stdout.on('data', (d: Buffer) => {
      if (!ready && d.toString().includes('READY')) {
        ready = true;
        setTimeout(() => child.kill('SIGKILL'), killAfterMs);
      }
    });
    child.on('close', (code, signal) => {
      if (signal !== 'SIGKILL') return reject(new Error(`writer exited on its own (${signal ?? code}): ${stderr}`));
      const ops: Op[] = [];
      let flushedUpTo = firstId;
      for (const line of readFileSync(logPath, 'utf8').split('\n')) {
        const [tag, a, b, c] = line.split(' ');
        if (tag === 'W' || tag === 'D') ops.push({ kind: tag, id: Number(a), offset: Number(b), length: Number(c) });
        else if (tag === 'F') flushedUpTo = Number(a);
      }
      resolve({ ops, flushedUpTo });
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

interface Lane {
  name: string;
  setup: (path: string) => Promise<Int32Array>;
}

const lanes: Lane[] = [
  { name: 'v3 4k', setup: async (p) => (await createImage(p, { size: SIZE, clusterSize: 4096 }), new Int32Array(SIZE / SECTOR)) },
  { name: 'v2 64k', setup: async (p) => (await createImage(p, { size: SIZE, clusterSize: 65536, version: 2 }), new Int32Array(SIZE / SECTOR)) },
  { name: 'v3 16k', setup: async (p) => (await createImage(p, { size: SIZE, clusterSize: 16384 }), new Int32Array(SIZE / SECTOR)) },
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
  },
];

async function runLane(lane: Lane, index: number): Promise<{ kills: number; flushesSeen: number; opsSeen: number }> {
  const path = tmp.path(`crash-${index}.qcow2`);
  let state = await lane.setup(path);
  const next = rng(4242 + index);
  let nextId = 10;
  let flushesSeen = 0;
  let opsSeen = 0;
  for (let kill = 1; kill <= KILLS_PER_LANE; kill++) {
    const { ops, flushedUpTo } = await runAndKill(path, nextId, Math.floor(next() * 2 ** 31), 5 + Math.floor(next() * 150));
    opsSeen += ops.length;
    if (flushedUpTo > nextId) flushesSeen++;
    const check = qemuCheck(path);
    const report = JSON.parse(check.stdout || '{}') as { corruptions?: number };
    expect(check.status === 0 || check.status === 3, `${lane.name} kill ${kill}: qemu-img check ${check.status}\n${check.stdout}${check.stderr}`).toBe(true);
    expect(report.corruptions ?? 0).toBe(0);

    const durable = Int32Array.from(state);
    applyOps(durable, ops.filter((o) => o.id <= flushedUpTo));
    // Sectors an op after the flush touched may hold its data (or zeros, for a discard).
    const maybe = new Map<number, Set<number>>();
    for (const op of ops.filter((o) => o.id > flushedUpTo)) {
      for (let s = op.offset / SECTOR; s < (op.offset + op.length) / SECTOR; s++) {
        let set = maybe.get(s);
        if (!set) maybe.set(s, (set = new Set()));
        set.add(op.kind === 'W' ? op.id : 0);
      }
    }
    const actual = await readSectors(path);
    for (let s = 0; s < actual.length; s++) {
      if (actual[s] === durable[s] || maybe.get(s)?.has(actual[s]!)) continue;
      const touching = ops.filter((o) => o.offset <= s * SECTOR && s * SECTOR < o.offset + o.length).map((o) => `${o.kind}${o.id}`);
      throw new Error(
        `${lane.name} kill ${kill}: sector ${s} holds op ${actual[s]}, expected ${durable[s]} (flushed up to ${flushedUpTo}, first id ${nextId}, ops here: ${touching.join(' ')}; op ${actual[s]}: ${JSON.stringify(ops.find((o) => o.id === actual[s]))}, ${ops.length} ops up to ${ops[ops.length - 1]?.id})`,
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
  return { kills: KILLS_PER_LANE, flushesSeen, opsSeen };
}

describe.skipIf(!hasQemu)('crash consistency under SIGKILL', () => {
  it(`${lanes.length * KILLS_PER_LANE} random kills: no corruption, flushed data survives`, async () => {
    // All lanes at once: each mostly waits on a child starting up or being killed.
    const results = await Promise.all(lanes.map((lane, i) => runLane(lane, i)));
    const kills = results.reduce((n, r) => n + r.kills, 0);
    expect(kills).toBe(200);
    // The kills must have landed in interesting places: after flushes, mid-stream.
    expect(results.reduce((n, r) => n + r.flushesSeen, 0)).toBeGreaterThan(50);
    expect(results.reduce((n, r) => n + r.opsSeen, 0)).toBeGreaterThan(2000);
  }, 290_000);
});
