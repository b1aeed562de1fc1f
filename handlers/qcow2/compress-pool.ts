/**
 * Cluster compression and decompression OFF the event loop: a small pool of
 * worker threads, shared by every image in the process. (Both run in the
 * addon on libuv's thread pool instead when the addon was built with the
 * codec: see compressClusters and decompressOffThread.) Requests made in
 * the same turn of the event loop are coalesced into one message per worker
 * (a 1 MiB write is one hop carrying 16 clusters, not 16 hops), so the cost
 * per cluster is a memcpy into the batch plus the codec itself.
 *
 * Formats are QEMU's (block/qcow2-threads.c): zlib is raw deflate with a
 * 4 KiB window (windowBits -12, memLevel 9, default level); QEMU inflates
 * with that window, so a larger one would make images QEMU cannot read.
 * zstd is one frame per cluster at the default level (3).
 *
 * The worker source is a plain function turned into a string (eval worker):
 * it runs the same from the TypeScript sources (tests) and from dist/.
 */
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import { StorageError } from '../../src/backstore/errors.js';
import { native, type NativeBinding } from '../../src/native.js';
import type { CompressionType } from './format.js';

/** Result of compressing one cluster. */
export interface Compressed {
  /** The cluster is all zeros (no data needs storing at all). */
  zero: boolean;
  /** Compressed bytes, or undefined when they would not be smaller than the cluster (store it raw). */
  data?: Buffer;
}

type Op = 'compress' | 'decompress';

interface Job {
  op: Op;
  type: CompressionType;
  clusterSize: number;
  input: Buffer;
  resolve: (r: { data?: Buffer; zero: boolean; error?: string }) => void;
  reject: (err: Error) => void;
}

interface Reply {
  id: number;
  data: ArrayBuffer;
  lengths: number[];
  zero: boolean[];
  errors: (string | null)[];
  fatal?: string;
}

/** Largest batch (input bytes) sent in one message: bounds the copy held per hop. */
const MAX_BATCH_BYTES = 4 << 20;

/* eslint-disable @typescript-eslint/no-require-imports */
/**
 * Runs inside the worker (as source text: it may use nothing from this
 * module's scope). One batch in, one transferable buffer out.
 */
function workerMain(req: NodeJS.Require, zstdPath: string): void {
  const { parentPort } = req('node:worker_threads') as typeof import('node:worker_threads');
  const zlib = req('node:zlib') as typeof import('node:zlib');
  const zstd = req(zstdPath) as typeof import('zstd-napi/binding.js');
  const cctx = new zstd.CCtx();
  const zeros = new Map<number, Buffer>();
  const scratches = new Map<number, Buffer>();
  parentPort!.on('message', (m: { id: number; op: Op; type: CompressionType; clusterSize: number; data: ArrayBuffer; lengths: number[] }) => {
    try {
      const cs = m.clusterSize;
      let zero = zeros.get(cs);
      if (!zero) zeros.set(cs, (zero = Buffer.alloc(cs)));
      const input = Buffer.from(m.data);
      const n = m.lengths.length;
      // Results go straight into ONE transferable buffer (no per-cluster
      // allocation, no concatenation copy): a cluster each for inflate; for
      // deflate each result is at most a cluster too (larger ones are not
      // kept: the cluster is stored raw), so n clusters always suffice.
      const out = Buffer.from(new ArrayBuffer(n * cs));
      let outAt = 0;
      const lengths: number[] = [];
      const zeroFlags: boolean[] = [];
      const errors: (string | null)[] = [];
      let at = 0;
      for (const len of m.lengths) {
        const src = input.subarray(at, at + len);
        at += len;
        const dst = out.subarray(outAt, outAt + cs);
        let written = -1;
        let error: string | null = null;
        let isZero = false;
        try {
          if (m.op === 'compress') {
            isZero = src.equals(zero);
            if (!isZero) {
              let packed: Buffer;
              if (m.type === 'zlib') {
                packed = zlib.deflateRawSync(src, { windowBits: 12, memLevel: 9 });
              } else {
                let scratch = scratches.get(cs);
                if (!scratch) scratches.set(cs, (scratch = Buffer.alloc(zstd.compressBound(cs))));
                packed = scratch.subarray(0, cctx.compress(scratch, src, 3));
              }
              if (packed.length < cs) written = packed.copy(dst); // else not worth it: stored raw
            }
          } else if (m.type === 'zlib') {
            // SYNC_FLUSH: the payload is sector-rounded and may end mid-stream without an error.
            written = zlib.inflateRawSync(src, { finishFlush: zlib.constants.Z_SYNC_FLUSH, maxOutputLength: cs }).copy(dst);
          } else {
            let inAt = 0;
            written = 0;
            // One or more frames (QEMU may write several); stop once the cluster is full.
            while (written < cs && inAt < src.length) {
              const frame = src.subarray(inAt);
              const size = zstd.findFrameCompressedSize(frame);
              written += zstd.decompress(dst.subarray(written), frame.subarray(0, size));
              inAt += size;
            }
          }
          if (m.op === 'decompress' && written !== cs) error = `decompressed to ${written} bytes, expected ${cs}`;
        } catch (err) {
          const code = (err as { code?: string }).code;
          error = code === 'ERR_BUFFER_TOO_LARGE' ? 'data inflates beyond one cluster' : 'corrupt compressed data';
        }
        if (error) written = -1;
        lengths.push(written);
        if (written > 0) outAt += written;
        zeroFlags.push(isZero);
        errors.push(error);
      }
      const data = out.buffer;
      parentPort!.postMessage({ id: m.id, data, lengths, zero: zeroFlags, errors }, [data]);
    } catch (err) {
      parentPort!.postMessage({ id: m.id, fatal: String((err as Error)?.message ?? err) });
    }
  });
}
/* eslint-enable @typescript-eslint/no-require-imports */

interface PoolWorker {
  worker: Worker;
  inflight: Map<number, Job[]>;
}

class CompressPool {
  private workers: PoolWorker[] = [];
  private queue: Job[] = [];
  private scheduled = false;
  private nextId = 1;
  private turn = 0;

  constructor(private readonly size: number) {}

  run(op: Op, type: CompressionType, clusterSize: number, input: Buffer): Promise<{ data?: Buffer; zero: boolean; error?: string }> {
    return new Promise((resolve, reject) => {
      this.queue.push({ op, type, clusterSize, input, resolve, reject });
      if (!this.scheduled) {
        this.scheduled = true;
        // Everything asked for in this turn of the loop travels together.
        setImmediate(() => this.dispatch());
      }
    });
  }

  private spawn(): PoolWorker {
    const zstdPath = createRequire(import.meta.url).resolve('zstd-napi/binding.js');
    // esbuild (tests) may wrap named functions with __name(); give the worker a no-op one.
    const source = `var __name = (f) => f; (${workerMain.toString()})(require, ${JSON.stringify(zstdPath)});`;
    const worker = new Worker(source, { eval: true });
    const pw: PoolWorker = { worker, inflight: new Map() };
    worker.on('message', (r: Reply) => this.settle(pw, r));
    const fail = (err: Error) => {
      // A dead worker fails its batches and is replaced on the next dispatch.
      this.workers = this.workers.filter((w) => w !== pw);
      for (const jobs of pw.inflight.values()) {
        for (const j of jobs) j.reject(new StorageError('EIO', `qcow2: compression worker failed: ${err.message}`, { cause: err }));
      }
      pw.inflight.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`exited with code ${code}`)));
    // After the listeners (adding a 'message' listener refs the port again): an
    // idle pool never keeps the process alive; a busy worker does (send/settle).
    worker.unref();
    return pw;
  }

  private pick(): PoolWorker {
    if (this.workers.length < this.size) {
      const pw = this.spawn();
      this.workers.push(pw);
      return pw;
    }
    const pw = this.workers[this.turn++ % this.workers.length]!;
    return pw;
  }

  private dispatch(): void {
    this.scheduled = false;
    const jobs = this.queue;
    this.queue = [];
    // Group by what the worker must do; split so no message carries more than MAX_BATCH_BYTES.
    const groups = new Map<string, Job[]>();
    for (const j of jobs) {
      const key = `${j.op}:${j.type}:${j.clusterSize}`;
      let g = groups.get(key);
      if (!g) groups.set(key, (g = []));
      g.push(j);
    }
    for (const g of groups.values()) {
      let batch: Job[] = [];
      let bytes = 0;
      for (const j of g) {
        if (batch.length > 0 && bytes + j.input.length > MAX_BATCH_BYTES) {
          this.send(batch);
          batch = [];
          bytes = 0;
        }
        batch.push(j);
        bytes += j.input.length;
      }
      if (batch.length > 0) this.send(batch);
    }
  }

  private send(batch: Job[]): void {
    let pw: PoolWorker;
    try {
      pw = this.pick();
    } catch (err) {
      for (const j of batch) j.reject(new StorageError('EIO', 'qcow2: cannot start a compression worker', { cause: err }));
      return;
    }
    const id = this.nextId++;
    const total = batch.reduce((n, j) => n + j.input.length, 0);
    const data = new ArrayBuffer(total);
    const view = Buffer.from(data);
    let at = 0;
    for (const j of batch) {
      j.input.copy(view, at);
      at += j.input.length;
    }
    pw.inflight.set(id, batch);
    if (pw.inflight.size === 1) pw.worker.ref();
    const first = batch[0]!;
    pw.worker.postMessage(
      { id, op: first.op, type: first.type, clusterSize: first.clusterSize, data, lengths: batch.map((j) => j.input.length) },
      [data],
    );
  }

  private settle(pw: PoolWorker, r: Reply): void {
    const batch = pw.inflight.get(r.id);
    if (!batch) return;
    pw.inflight.delete(r.id);
    if (pw.inflight.size === 0) pw.worker.unref();
    if (r.fatal !== undefined) {
      for (const j of batch) j.reject(new StorageError('EIO', `qcow2: compression worker: ${r.fatal}`));
      return;
    }
    const all = Buffer.from(r.data);
    let at = 0;
    batch.forEach((j, i) => {
      const len = r.lengths[i]!;
      const data = len >= 0 ? all.subarray(at, at + len) : undefined;
      if (len > 0) at += len;
      j.resolve({ data, zero: r.zero[i]!, error: r.errors[i] ?? undefined });
    });
  }
}

let pool: CompressPool | undefined;
function sharedPool(): CompressPool {
  // At least two (the event loop mostly waits while a batch compresses), at most four.
  pool ??= new CompressPool(Math.min(4, Math.max(2, availableParallelism() - 1)));
  return pool;
}

/** The addon's codec functions, or ENOTSUP when it was built without them. */
function addonCodec(): Required<Pick<NativeBinding, 'inflateCluster' | 'deflateCluster'>> {
  const { inflateCluster, deflateCluster } = native();
  if (!inflateCluster || !deflateCluster) throw new StorageError('ENOTSUP', 'qcow2: the addon was built without zstd.h/zlib.h (no cluster codec)');
  return { inflateCluster, deflateCluster };
}

/**
 * Compress whole clusters (each `clusterSize` bytes) off the event loop: on
 * libuv's thread pool when the addon has the codec (each cluster its own
 * task, so a 1 MiB write spreads over every pool thread), else in one or few
 * worker hops.
 */
export function compressClusters(type: CompressionType, clusterSize: number, clusters: readonly Buffer[]): Promise<Compressed[]> {
  return native().deflateCluster ? deflateOnThreadPool(type, clusterSize, clusters) : deflateOnWorkers(type, clusterSize, clusters);
}

/** compressClusters in the addon (throws ENOTSUP when it was built without the codec). */
export async function deflateOnThreadPool(type: CompressionType, clusterSize: number, clusters: readonly Buffer[]): Promise<Compressed[]> {
  const deflate = addonCodec().deflateCluster;
  // One allocation for the batch; each payload is shorter than its cluster.
  const out = Buffer.allocUnsafe(clusters.length * clusterSize);
  return Promise.all(
    clusters.map(
      (c, i) =>
        new Promise<Compressed>((resolve, reject) => {
          const dst = out.subarray(i * clusterSize, (i + 1) * clusterSize);
          deflate(type === 'zstd' ? 1 : 0, c, dst, (error, n) => {
            if (error !== null) reject(new StorageError('EIO', `qcow2: cannot compress cluster: ${error}`));
            else resolve(n < 0 ? { zero: true } : { zero: false, data: n > 0 ? dst.subarray(0, n) : undefined });
          });
        }),
    ),
  );
}

/** compressClusters on the worker threads. */
export async function deflateOnWorkers(type: CompressionType, clusterSize: number, clusters: readonly Buffer[]): Promise<Compressed[]> {
  return Promise.all(
    clusters.map(async (c) => {
      const r = await sharedPool().run('compress', type, clusterSize, c);
      if (r.error) throw new StorageError('EIO', `qcow2: cannot compress cluster: ${r.error}`);
      return { zero: r.zero, data: r.data };
    }),
  );
}

/**
 * Inflate one compressed payload (sector-rounded, trailing bytes ignored) to
 * one cluster, off the event loop: on libuv's thread pool when the addon has
 * the codec (one hand-off, no copies: under emulation a guest read of a
 * compressed cluster cost more in the worker hop than in the inflate), else
 * on the worker threads.
 */
export function decompressOffThread(type: CompressionType, input: Buffer, clusterSize: number): Promise<Buffer> {
  return native().inflateCluster ? inflateOnThreadPool(type, input, clusterSize) : inflateOnWorkers(type, input, clusterSize);
}

/** decompressOffThread in the addon (throws ENOTSUP when it was built without the codec). */
export async function inflateOnThreadPool(type: CompressionType, input: Buffer, clusterSize: number): Promise<Buffer> {
  const inflate = addonCodec().inflateCluster;
  const out = Buffer.allocUnsafe(clusterSize);
  const error = await new Promise<string | null>((resolve) => inflate(type === 'zstd' ? 1 : 0, input, out, resolve));
  if (error !== null) throw new StorageError('EIO', `qcow2: cannot decompress ${type} cluster: ${error}`);
  return out;
}

/** decompressOffThread on the worker threads. */
export async function inflateOnWorkers(type: CompressionType, input: Buffer, clusterSize: number): Promise<Buffer> {
  const r = await sharedPool().run('decompress', type, clusterSize, input);
  if (r.error || !r.data) throw new StorageError('EIO', `qcow2: cannot decompress ${type} cluster: ${r.error ?? 'no data'}`);
  return r.data;
}
