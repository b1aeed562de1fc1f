/**
 * Space accounting of an image's active tree, for `tcmu-ts image info`:
 * how many guest clusters are stored compressed, uncompressed or as zeros,
 * the payload bytes, and the compression ratio (guest bytes stored over the
 * bytes they take in the file).
 */
import type { Qcow2Image } from './image.js';
import { readL2 } from './l2-entry.js';
import { forEachL2 } from './tree-walk.js';

export interface SpaceStats {
  /** Virtual (guest-visible) size in bytes. */
  logicalSize: number;
  /** Bytes the image file really occupies on its filesystem (st_blocks * 512). */
  allocatedSize: number;
  /** File length (holes included). */
  fileSize: number;
  compressedClusters: number;
  uncompressedClusters: number;
  zeroClusters: number;
  /** Sum of the compressed payload sizes as their descriptors give them (sector rounded). */
  compressedBytes: number;
  /** Guest data bytes held by data clusters (compressed + uncompressed) / bytes those take on the host; 1 when none. */
  compressionRatio: number;
}

export async function spaceStats(img: Qcow2Image): Promise<SpaceStats> {
  const st = await img.fh.stat();
  const s: SpaceStats = {
    logicalSize: img.size,
    allocatedSize: st.blocks * 512,
    fileSize: st.size,
    compressedClusters: 0,
    uncompressedClusters: 0,
    zeroClusters: 0,
    compressedBytes: 0,
    compressionRatio: 1,
  };
  await forEachL2(img, img.l1, (_i, _off, table) => {
    for (let i = 0; i < img.l2Entries; i++) {
      if (table.readUInt32BE(i * 8) === 0 && table.readUInt32BE(i * 8 + 4) === 0) continue;
      const e = readL2(table, i, img.clusterBits);
      if (e.kind === 'compressed') {
        s.compressedClusters++;
        s.compressedBytes += e.compressedSize;
      } else if (e.kind === 'normal') s.uncompressedClusters++;
      else if (e.kind === 'zero') s.zeroClusters++;
    }
  });
  const stored = s.compressedBytes + s.uncompressedClusters * img.clusterSize;
  const data = (s.compressedClusters + s.uncompressedClusters) * img.clusterSize;
  s.compressionRatio = stored > 0 ? Math.round((data / stored) * 100) / 100 : 1;
  return s;
}
