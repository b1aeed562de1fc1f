/**
 * Byte-range reads and writes on the layer below, for header and keyslot
 * access, aligned to the lower store's block size (a LUKS1 keyslot may start
 * on any 512-byte sector, a lower store may have 4096-byte blocks).
 */
import type { Backstore } from '../../src/backstore/types.js';

export async function readLower(lower: Backstore, offset: number, length: number): Promise<Buffer> {
  const bs = lower.blockSize;
  const start = Math.floor(offset / bs) * bs;
  const end = Math.ceil((offset + length) / bs) * bs;
  const buf = Buffer.alloc(end - start);
  await lower.read(start, [buf]);
  return start === offset && end === offset + length ? buf : buf.subarray(offset - start, offset - start + length);
}

/** Write `data` at `offset` (read-modify-write of the partial blocks at either end). */
export async function writeLower(lower: Backstore, offset: number, data: Buffer): Promise<void> {
  if (!lower.write) throw Object.assign(new Error('the layer below is read-only'), { code: 'EROFS' });
  const bs = lower.blockSize;
  const start = Math.floor(offset / bs) * bs;
  const end = Math.ceil((offset + data.length) / bs) * bs;
  if (start === offset && end === offset + data.length) {
    await lower.write(offset, [data], { fua: false });
    return;
  }
  const buf = Buffer.alloc(end - start);
  await lower.read(start, [buf]);
  data.copy(buf, offset - start);
  await lower.write(start, [buf], { fua: false });
}
