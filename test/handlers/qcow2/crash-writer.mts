/**
 * Child process of crash.test.ts (from dist/ when built, else through tsx): writes and
 * discards at random, in concurrent batches, with flushes, until SIGKILLed.
 * Protocol on stdout (synchronous on Linux pipes, so a line the parent sees
 * really happened before it):
 *   READY
 *   W <id> <offset> <length>   issued (printed BEFORE the write starts)
 *   D <id> <offset> <length>   discard issued
 *   A <id>                     op <id> acknowledged (its promise resolved)
 *   F <id>                     flush done: every op with id <= <id> is durable
 * The log file gets every line; stdout gets READY and the A lines, so the
 * parent can kill after a number of acknowledgements (not after a time).
 * argv: image path, log path, first op id, seed, flush probability per batch,
 * compression ('' for none; else writes are compressed and an online
 * compaction runs alongside some batches; 'zstd+stage' also stages partial
 * writes uncompressed, and the compactions compress them)
 */
import { openSync, writeSync } from 'node:fs';
import { openImage } from '../../../handlers/qcow2/api.js';
import { Qcow2Backstore } from '../../../handlers/qcow2/backstore.js';
import { compactImage } from '../../../handlers/qcow2/compaction.js';
import { enableWriteCompression } from '../../../handlers/qcow2/compression-mode.js';
import type { CompressionType } from '../../../handlers/qcow2/format.js';
import { enableStaging } from '../../../handlers/qcow2/staging.js';
import { fillPattern, SECTOR } from './crash-pattern.js';
import { rng } from './qemu.js';

const [path, logPath, firstId, seed, flushProbability = '0.3', compress = ''] = process.argv.slice(2);
const logFd = openSync(logPath!, 'w');
const next = rng(Number(seed));
const image = await openImage(path!, { readOnly: false });
const [codec = '', policy] = compress.split('+');
if (codec) enableWriteCompression(image, codec);
if (policy === 'stage') enableStaging(image);
const store = new Qcow2Backstore(image, SECTOR);
const sectors = store.size / SECTOR;
let id = Number(firstId);
// Synchronous: the line is in the file before the op it announces starts.
const say = (line: string) => writeSync(logFd, `${line}\n`);
// Logged (then told to the parent) as soon as the op resolves, before anything else runs.
const ack = (opId: number) => (op: Promise<void>) =>
  op.then(() => {
    say(`A ${opId}`);
    process.stdout.write(`A ${opId}\n`);
  });
process.stdout.write('READY\n');

for (;;) {
  const batch = 1 + Math.floor(next() * 6);
  const taken: Array<[number, number]> = [];
  const jobs: Promise<void>[] = [];
  for (let k = 0; k < batch; k++) {
    const len = 1 + Math.floor(next() * 128);
    const start = Math.floor(next() * (sectors - len));
    // Disjoint within a batch, so the completion order cannot matter.
    if (taken.some(([a, b]) => start < b && a < start + len)) continue;
    taken.push([start, start + len]);
    const opId = ++id;
    if (next() < 0.15) {
      say(`D ${opId} ${start * SECTOR} ${len * SECTOR}`);
      jobs.push(ack(opId)(store.discard(start * SECTOR, len * SECTOR)));
    } else {
      const buf = Buffer.alloc(len * SECTOR);
      fillPattern(buf, opId, start);
      say(`W ${opId} ${start * SECTOR} ${len * SECTOR}`);
      jobs.push(ack(opId)(store.write(start * SECTOR, [buf], { fua: false })));
    }
  }
  // Compaction alongside the batch (not an op: it must change no sector's contents).
  if (codec && next() < 0.15) {
    jobs.push(compactImage(image, codec as CompressionType, { chunk: 8, threshold: 0.9, recompress: policy === 'stage' ? 'staged' : undefined }).then(() => {}));
  }
  await Promise.all(jobs);
  if (next() < Number(flushProbability)) {
    const upTo = id;
    await store.flush();
    say(`F ${upTo}`);
  }
}
