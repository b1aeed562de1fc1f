/**
 * Fuzz target `qcow2`: mutated images, opened the way the daemon and the CLI
 * open them.
 *
 * Seeds (made once per run in setup(), into the work dir): real images from
 * `qemu-img create`/`qemu-io` (v2 and v3, clusters 512 B .. 2 MiB,
 * refcount_bits 1 .. 64, data, internal snapshots, zlib and zstd compressed
 * clusters from `qemu-img convert -c`, an overlay on a qcow2 base) and from our own
 * createImage + writes. Mutations favour the fields that steer the parser:
 * header fields, L1 / L2 / refcount table entries, the first refcount block,
 * the snapshot table.
 *
 * Each case:
 *  1. open read-only, info, check, read a few ranges; the file must be
 *     byte-identical afterwards (else finding 'wrote-readonly');
 *  2. open writable; write patterns at a few offsets and read each back
 *     (must match, else 'bad-readback'); close, reopen, read back again.
 * A mismatch is a finding only when the read-only check found no corruption:
 * an image whose check reports corruption (two L2 entries sharing one data
 * cluster, say) may alias data exactly as QEMU would; that is counted as
 * 'rw-aliased-on-corrupt' and shown in the table.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkConsistency } from '../../../handlers/qcow2/check.js';
import { createImage } from '../../../handlers/qcow2/create.js';
import type { Qcow2Image } from '../../../handlers/qcow2/image.js';
import { openImage } from '../../../handlers/qcow2/open.js';
import { listSnapshots } from '../../../handlers/qcow2/snapshots.js';
import { writeRange } from '../../../handlers/qcow2/write-path.js';
import { mutate } from '../lib/mutate.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding, isCleanRefusal, type FuzzTarget } from '../lib/target.js';

interface Seed {
  name: string;
  bytes: Buffer;
  hot: number[];
}

let seeds: Seed[] = [];
let seedDir = '';

function tool(cmd: string, ...args: string[]): void {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
}

function qemuAvailable(): boolean {
  const ok = spawnSync('qemu-img', ['--version']).status === 0 && spawnSync('qemu-io', ['--version']).status === 0;
  if (!ok && process.env.CI) throw new Error('fuzz target qcow2: qemu-img/qemu-io are required in CI (scripts/setup.sh installs qemu-utils)');
  if (!ok) console.warn('fuzz target qcow2: qemu-img not found, using only images made by this project (install qemu-utils)');
  return ok;
}

/** Real images from qemu: the formats in the wild, with every feature we read. */
function qemuSeeds(dir: string): void {
  const io = (path: string, ...cmds: string[]) => tool('qemu-io', ...cmds.flatMap((c) => ['-c', c]), path);
  const create = (name: string, opts: string, size: string) => {
    const p = join(dir, name);
    tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-o', opts, p, size);
    return p;
  };
  io(create('v2-64k.qcow2', 'compat=0.10,cluster_size=65536', '8M'), 'write -P 0x11 0 96k', 'write -P 0x22 3M 8k');
  io(create('v3-512.qcow2', 'cluster_size=512', '2M'), 'write -P 0x33 0 20k', 'write -P 0x44 1M 3k');
  io(create('v3-4k-rb1.qcow2', 'cluster_size=4096,refcount_bits=1', '4M'), 'write -P 0x55 0 40k');
  io(create('v3-4k-rb2.qcow2', 'cluster_size=4096,refcount_bits=2', '4M'), 'write -P 0x56 8k 24k');
  io(create('v3-16k-rb4.qcow2', 'cluster_size=16384,refcount_bits=4', '4M'), 'write -P 0x57 0 64k');
  io(create('v3-64k-rb8.qcow2', 'cluster_size=65536,refcount_bits=8', '8M'), 'write -P 0x58 64k 128k');
  io(create('v3-64k-rb32.qcow2', 'cluster_size=65536,refcount_bits=32', '8M'), 'write -P 0x59 0 64k');
  io(create('v3-64k-rb64.qcow2', 'cluster_size=65536,refcount_bits=64', '8M'), 'write -P 0x5a 1M 64k');
  io(create('v3-2m.qcow2', 'cluster_size=2M', '16M'), 'write -P 0x66 0 64k');
  io(create('v3-2m-rb1.qcow2', 'cluster_size=2M,refcount_bits=1', '64M'), 'write -P 0x67 2M 8k');
  const snap = create('v3-snap.qcow2', 'cluster_size=4096', '2M');
  io(snap, 'write -P 0x77 0 16k');
  tool('qemu-img', 'snapshot', '-c', 'one', snap);
  io(snap, 'write -P 0x78 4k 8k');
  tool('qemu-img', 'snapshot', '-c', 'two', snap);
  const v2snap = create('v2-snap.qcow2', 'compat=0.10,cluster_size=4096', '2M');
  io(v2snap, 'write -P 0x79 0 12k');
  tool('qemu-img', 'snapshot', '-c', 'only', v2snap);
  const raw = join(dir, 'src.raw');
  tool('qemu-img', 'create', '-q', '-f', 'raw', raw, '1M');
  io(raw, 'write -P 0x88 0 256k', 'write -P 0x00 256k 64k');
  writeFileSync(raw, Buffer.concat([readFileSync(raw).subarray(0, 512 * 1024), Buffer.from('compressible '.repeat(40000)).subarray(0, 512 * 1024)]));
  tool('qemu-img', 'convert', '-q', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096', raw, join(dir, 'v3-compressed.qcow2'));
  tool('qemu-img', 'convert', '-q', '-c', '-O', 'qcow2', '-o', 'compat=0.10,cluster_size=65536', raw, join(dir, 'v2-compressed.qcow2'));
  // zstd payloads: a different decoder (the addon's libzstd) behind the same reads.
  tool('qemu-img', 'convert', '-q', '-c', '-O', 'qcow2', '-o', 'cluster_size=4096,compression_type=zstd', raw, join(dir, 'v3-compressed-zstd.qcow2'));
  rmSync(raw);
  // A chain: the base stays pristine (a "base-" name is never mutated), the overlay is.
  const base = create('base-of-chain.qcow2', 'cluster_size=4096', '2M');
  io(base, 'write -P 0x99 0 64k');
  tool('qemu-img', 'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2', '-o', 'cluster_size=4096', join(dir, 'v3-overlay.qcow2'), '2M');
  io(join(dir, 'v3-overlay.qcow2'), 'write -P 0x9a 4k 4k');
}

/** Images made by this project, written through our own write path. */
async function ownSeeds(dir: string): Promise<void> {
  for (const [name, clusterSize, version] of [
    ['own-v3-64k.qcow2', 65536, 3],
    ['own-v2-4k.qcow2', 4096, 2],
    ['own-v3-512.qcow2', 512, 3],
  ] as const) {
    const p = join(dir, name);
    await createImage(p, { size: 4 << 20, clusterSize, version });
    const img = await openImage(p, { readOnly: false });
    try {
      await writeRange(img, 0, [Buffer.alloc(3 * clusterSize, 0xc1)], 3 * clusterSize);
      await writeRange(img, 2 << 20, [Buffer.alloc(8192, 0xc2)], 8192);
    } finally {
      await img.close();
    }
  }
}

/** Offsets of the fields that steer the parser in this image. */
function hotOffsets(b: Buffer): number[] {
  const hot = [8, 16, 20, 24, 32, 36, 40, 48, 56, 60, 64, 72, 80, 88, 96, 100, 104];
  if (b.length < 72) return hot;
  const cs = 2 ** b.readUInt32BE(20);
  const l1 = Number(b.readBigUInt64BE(40));
  const rt = Number(b.readBigUInt64BE(48));
  const snaps = Number(b.readBigUInt64BE(64));
  const entries = (at: number, n: number) => {
    for (let i = 0; i < n && at + i * 8 + 8 <= b.length; i++) hot.push(at + i * 8);
  };
  entries(l1, 4);
  entries(rt, 4);
  if (rt + 8 <= b.length) {
    const block = Number(b.readBigUInt64BE(rt) & 0x00fffffffffffe00n);
    entries(block, 8);
  }
  if (l1 + 8 <= b.length) {
    const l2 = Number(b.readBigUInt64BE(l1) & 0x00fffffffffffe00n);
    entries(l2, 16);
  }
  if (snaps > 0) entries(snaps, 6);
  return hot.filter((o) => o < b.length && o < 64 * cs);
}

function sha(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function codeOf(err: unknown): string {
  if (isCleanRefusal(err)) {
    // A clean-looking error that only wraps a parser bug is still a bug.
    // (open's last-resort wrapper, see namedOpenError in image.ts).
    const cause = (err as { cause?: unknown }).cause;
    if (/could not be parsed/.test(err.message) && cause instanceof Error) throw cause;
    return err.code;
  }
  throw err;
}

async function closeQuietly(img: Qcow2Image | undefined): Promise<void> {
  if (!img) return;
  try {
    await img.close();
  } catch (err) {
    codeOf(err); // a clean refusal at close is fine (e.g. a write of metadata refused)
  }
}

/** Read-only phase: open, info, check, a few reads. Returns whether check found corruption, or a refusal class. */
async function readOnlyPhase(path: string, rng: Rng): Promise<{ corrupt: boolean } | string> {
  let img: Qcow2Image | undefined;
  try {
    img = await openImage(path, { readOnly: true });
    const opened = img;
    listSnapshots(opened);
    const res = await opened.lock.run(() => checkConsistency(opened));
    for (let i = 0; i < 3; i++) {
      const len = rng.pick([512, 4096, 65536, 300 * 1024]);
      const at = Math.min(rng.below(Math.max(1, opened.size)), Math.max(0, opened.size - len)) & ~511;
      try {
        await opened.read(at, [Buffer.alloc(Math.min(len, Math.max(512, opened.size - at)))]);
      } catch (err) {
        codeOf(err);
      }
    }
    return { corrupt: res.corruptions > 0 || (opened.header.incompatible & 2n) !== 0n };
  } catch (err) {
    return `ro-refused:${codeOf(err)}`;
  } finally {
    await closeQuietly(img);
  }
}

interface Probe {
  at: number;
  data: Buffer;
}

async function readBack(img: Qcow2Image, p: Probe): Promise<boolean> {
  const got = Buffer.alloc(p.data.length);
  await img.read(p.at, [got]);
  return got.equals(p.data);
}

const target: FuzzTarget = {
  name: 'qcow2',
  description: 'mutated qcow2 images (qemu-made and own): read-only open/info/check never writes, writes read back',
  cases: { short: 600, long: 3000 },

  async setup(workDir) {
    seedDir = join(workDir, 'seeds');
    const doneMark = join(seedDir, '.done');
    if (!existsSync(doneMark)) {
      // Workers of a run follow one another (never in parallel): a later one reuses the seeds.
      rmSync(seedDir, { recursive: true, force: true });
      mkdirSync(seedDir, { recursive: true });
      if (qemuAvailable()) qemuSeeds(seedDir);
      await ownSeeds(seedDir);
      writeFileSync(doneMark, '');
    }
    seeds = readdirSync(seedDir)
      .filter((n) => n.endsWith('.qcow2') && !n.startsWith('base-'))
      .sort()
      .map((name) => {
        const bytes = readFileSync(join(seedDir, name));
        return { name, bytes, hot: hotOffsets(bytes) };
      });
  },

  async runCase({ rng, index, workDir }) {
    const seed = rng.pick(seeds);
    const bytes = mutate(rng, seed.bytes, { hot: seed.hot, hotBias: 0.75, count: rng.between(1, 3) });
    // Same directory as the seeds: a relative backing name keeps resolving to the base.
    const path = join(seedDir, `case-${index}.qcow2`);
    writeFileSync(path, bytes);
    try {
      const before = sha(path);
      const ro = await readOnlyPhase(path, rng);
      if (sha(path) !== before) throw new FuzzFinding('wrote-readonly', `read-only open/info/check of ${seed.name} mutation changed the file`);
      if (typeof ro === 'string') return ro;
      return await writablePhase(path, rng, ro.corrupt, seed.name);
    } finally {
      rmSync(path, { force: true });
      void workDir;
    }
  },
};

async function writablePhase(path: string, rng: Rng, knownCorrupt: boolean, seedName: string): Promise<string> {
  let img: Qcow2Image | undefined;
  const probes: Probe[] = [];
  let aliased = false;
  const mismatch = (what: string): string => {
    if (knownCorrupt) {
      aliased = true;
      return 'rw-aliased-on-corrupt';
    }
    throw new FuzzFinding('bad-readback', `${what} (seed ${seedName})`);
  };
  try {
    try {
      img = await openImage(path, { readOnly: false });
    } catch (err) {
      return `rw-refused:${codeOf(err)}`;
    }
    if (img.readOnly) return 'opened-ro-corrupt';
    const span = Math.min(img.size, 8 << 20);
    if (span < 512) return 'rw-empty';
    for (let i = 0; i < 3; i++) {
      const len = Math.min(span, rng.pick([512, 4096, 65536 + 512, 200 * 1024]));
      const at = (rng.below(span - len + 1) & ~511) >>> 0;
      const data = Buffer.alloc(len, 0x20 + i + (rng.below(200) & 0xfe));
      // Distinct patterns: later probes must not overlap earlier ones in a way that hides a lost write.
      if (probes.some((p) => at < p.at + p.data.length && p.at < at + len)) continue;
      try {
        await writeRange(img, at, [data], len);
      } catch (err) {
        return `rw-write-refused:${codeOf(err)}`;
      }
      probes.push({ at, data });
      try {
        if (!(await readBack(img, { at, data }))) return mismatch(`write at ${at} (${len} bytes) read back differently`);
      } catch (err) {
        return `rw-read-refused:${codeOf(err)}`;
      }
    }
    try {
      await img.close();
    } catch (err) {
      img = undefined;
      return `rw-close-refused:${codeOf(err)}`;
    }
    img = undefined;
    try {
      img = await openImage(path, { readOnly: true });
    } catch (err) {
      return `reopen-refused:${codeOf(err)}`;
    }
    for (const p of probes) {
      try {
        if (!(await readBack(img, p))) return mismatch(`after reopen, ${p.data.length} bytes at ${p.at} read back differently`);
      } catch (err) {
        return `reopen-read-refused:${codeOf(err)}`;
      }
    }
    return aliased ? 'rw-aliased-on-corrupt' : 'rw-ok';
  } finally {
    await closeQuietly(img);
  }
}

export default target;
