/**
 * Growing the virtual size. If the L1 table must grow, a new one is
 * allocated and written before the header points to it (one pwrite of
 * size + l1_size + l1_table_offset); the old one is freed afterwards.
 * Shrinking is refused: it would silently drop guest data.
 */
import { StorageError } from '../../src/backstore/errors.js';
import { writeFull } from './file-io.js';
import { HDR_OFF, MAX_L1_BYTES } from './format.js';
import type { Qcow2Image } from './image.js';
import { clustersOf } from './tree-walk.js';

export async function growImage(img: Qcow2Image, newSize: number): Promise<void> {
  if (img.readOnly) throw new StorageError('EROFS', 'qcow2: image is read-only');
  if (newSize < img.size) throw new StorageError('EINVAL', `qcow2: shrinking (${img.size} -> ${newSize}) is not supported`);
  if (newSize % 512 !== 0) throw new StorageError('EINVAL', 'qcow2: size must be a multiple of 512');
  await img.flush();
  await img.lock.run(async () => {
    const needed = Math.ceil(newSize / (img.clusterSize * img.l2Entries));
    let l1 = img.l1;
    let l1Offset = img.header.l1TableOffset;
    const oldL1 = clustersOf(img, img.header.l1TableOffset, img.l1.length);
    if (needed * 8 > MAX_L1_BYTES) throw new StorageError('EINVAL', `qcow2: size ${newSize} needs more than the ${MAX_L1_BYTES >> 20} MiB L1 table limit`);
    if (needed > img.header.l1Size) {
      l1 = Buffer.alloc(needed * 8);
      img.l1.copy(l1);
      l1Offset = await img.refcounts.allocate(Math.ceil(l1.length / img.clusterSize));
      await img.writeMetadata(); // refcounts (and the current L1) before the new L1 is referenced
      await writeFull(img.fh, l1, l1Offset);
    }
    const hdr = Buffer.alloc(24);
    hdr.writeBigUInt64BE(BigInt(newSize), 0);
    hdr.writeUInt32BE(img.header.cryptMethod, 8);
    hdr.writeUInt32BE(l1.length / 8, 12);
    hdr.writeBigUInt64BE(BigInt(l1Offset), 16);
    await writeFull(img.fh, hdr, HDR_OFF.size);
    if (l1 !== img.l1) for (const c of oldL1) img.refcounts.queueFree(c * img.clusterSize);
    img.header.size = newSize;
    img.header.l1Size = l1.length / 8;
    img.header.l1TableOffset = l1Offset;
    img.l1 = l1;
    img.rebuildMetadataMap();
  });
  await img.flush();
}
