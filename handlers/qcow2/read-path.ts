/**
 * Guest reads: per cluster lookup, then runs of clusters that map to one
 * contiguous host range become ONE preadv straight into the caller's
 * buffers. Unallocated runs go to the backing file in one request; zero
 * clusters are filled; compressed clusters are inflated and copied.
 */
import { readvFull } from './file-io.js';
import { readData } from './encryption.js';
import { decompressOffThread } from './compress-pool.js';
import type { Qcow2Image } from './image.js';
import type { ClusterEntry } from './l2-entry.js';
import { copyIntoIov, fillIov, sliceIov } from '../../src/iov.js';

type Run =
  | { kind: 'host'; host: number; at: number; len: number }
  | { kind: 'through'; guest: number; at: number; len: number }
  | { kind: 'zero'; at: number; len: number }
  | { kind: 'compressed'; entry: ClusterEntry; inCluster: number; at: number; len: number };

/**
 * A compressed cluster's contents, inflated off the event loop, through the
 * image's cache of recently inflated clusters (inflated-cache.ts). The
 * buffer may be shared: copy out of it, never write into it. `keep` false:
 * a miss is not cached (a read of the whole cluster, or a caller that
 * replaces the cluster next).
 */
export function readCompressed(img: Qcow2Image, e: ClusterEntry, keep = true): Promise<Buffer> {
  return img.inflated.get(e.host, e.compressedSize, () => inflatePayload(img, e), keep);
}

async function inflatePayload(img: Qcow2Image, e: ClusterEntry): Promise<Buffer> {
  const raw = Buffer.allocUnsafe(e.compressedSize);
  await readvFull(img.fh, [raw], e.host); // the data ring, as guest reads of normal clusters; zeros past EOF
  return decompressOffThread(img.header.compressionType, raw, img.clusterSize);
}

/** Where an unallocated range reads from: the backing file, or zeros. */
export async function readThrough(img: Qcow2Image, guest: number, bufs: readonly Buffer[]): Promise<void> {
  if (img.backing) await img.backing.read(guest, bufs);
  else fillIov(bufs);
}

export async function readRange(img: Qcow2Image, offset: number, iov: readonly Buffer[], length: number): Promise<void> {
  const cs = img.clusterSize;
  const runs: Run[] = [];
  let at = 0;
  while (at < length) {
    const guest = offset + at;
    const gc = Math.floor(guest / cs);
    const inCluster = guest % cs;
    const len = Math.min(cs - inCluster, length - at);
    const e = await img.entryAt(gc);
    const last = runs[runs.length - 1];
    if (e.kind === 'normal') {
      const host = e.host + inCluster;
      if (last?.kind === 'host' && last.host + last.len === host) last.len += len;
      else runs.push({ kind: 'host', host, at, len });
    } else if (e.kind === 'unallocated') {
      if (last?.kind === 'through') last.len += len;
      else runs.push({ kind: 'through', guest, at, len });
    } else if (e.kind === 'zero') {
      if (last?.kind === 'zero') last.len += len;
      else runs.push({ kind: 'zero', at, len });
    } else {
      runs.push({ kind: 'compressed', entry: e, inCluster, at, len });
    }
    at += len;
  }
  await Promise.all(
    runs.map(async (r) => {
      const bufs = sliceIov(iov, r.at, r.len);
      switch (r.kind) {
        case 'host':
          return readData(img, bufs, r.host);
        case 'through':
          return readThrough(img, r.guest, bufs);
        case 'zero':
          return fillIov(bufs);
        case 'compressed':
          // Only a partial read keeps what it inflated: the rest of that cluster is likely read
          // next, while a read of the whole cluster (streaming) would only push others out.
          return copyIntoIov(bufs, await readCompressed(img, r.entry, r.len < img.clusterSize), r.inCluster);
      }
    }),
  );
}
