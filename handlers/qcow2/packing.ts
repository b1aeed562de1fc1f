/**
 * Dense packing of compressed clusters into host clusters, QEMU's way
 * (byte granular, a payload may run on into the NEXT host cluster when that
 * one is allocated right after it). Refcounts stay exact: a host cluster's
 * refcount is the number of compressed L2 entries whose bytes touch it
 * (qcow2.txt; `qemu-img check` counts them that way), so every reservation
 * adds one to each host cluster it touches, at once, under the metadata
 * lock: a host cluster being filled can never drop to zero and be handed
 * out again while a payload is still on its way to it.
 *
 * The packer remembers the host cluster it is filling and how far; when
 * that cluster is freed (every payload in it dead, refcount 0) it forgets
 * it (`forgetFreedCluster`, called from the refcount release path).
 */
import type { Qcow2Image } from './image.js';

interface FillState {
  /** Host cluster index being filled. */
  cluster: number;
  /** Bytes of it already handed out. */
  used: number;
}

const filling = new WeakMap<Qcow2Image, FillState>();

/** The freed host cluster must not be appended to any more (it may be reallocated). */
export function forgetFreedCluster(img: Qcow2Image, hostOffset: number): void {
  const st = filling.get(img);
  if (st && st.cluster === Math.floor(hostOffset / img.clusterSize)) filling.delete(img);
}

/** Stop filling the current host cluster (compaction starts a fresh one). */
export function resetPacking(img: Qcow2Image): void {
  filling.delete(img);
}

/**
 * Reserve `len` (< cluster size) bytes for one compressed payload; returns
 * the host byte offset. Under `img.lock`. Refcounts of the touched host
 * clusters are raised here (in the cache; they reach the file before any
 * L2 entry, see metadata-cache.ts).
 */
export async function reservePayload(img: Qcow2Image, len: number): Promise<number> {
  const cs = img.clusterSize;
  const rc = img.refcounts;
  const st = filling.get(img);
  if (st && st.used < cs) {
    const refs = await rc.get(st.cluster);
    // 0: freed behind our back (belt and braces: forgetFreedCluster normally saw it);
    // at the maximum: refcount_bits too small to hold one more payload here.
    if (refs > 0 && refs < rc.maxRefcount) {
      const room = cs - st.used;
      const at = st.cluster * cs + st.used;
      if (len <= room) {
        await rc.set(st.cluster, refs + 1);
        st.used += len;
        return at;
      }
      // Spill into the next cluster only if the allocator hands out exactly that one.
      const next = await rc.allocate(1);
      if (next === (st.cluster + 1) * cs) {
        await rc.set(st.cluster, refs + 1);
        filling.set(img, { cluster: st.cluster + 1, used: len - room });
        return at;
      }
      filling.set(img, { cluster: next / cs, used: len });
      return next;
    }
  }
  const fresh = await rc.allocate(1);
  filling.set(img, { cluster: fresh / cs, used: len });
  return fresh;
}

/** Host clusters a payload of `len` bytes at `host` touches. */
export function payloadClusters(host: number, len: number, clusterSize: number): number[] {
  const first = Math.floor(host / clusterSize);
  const last = Math.floor((host + len - 1) / clusterSize);
  const out: number[] = [];
  for (let c = first; c <= last; c++) out.push(c);
  return out;
}

/**
 * Write a compressed L2 descriptor (qcow2.txt "Compressed Clusters
 * Descriptor"): with x = 62 - (cluster_bits - 8), bits 0..x-1 hold the
 * byte offset of the payload, bits x..61 the number of 512-byte sectors it
 * occupies beyond the first one, bit 62 marks the entry compressed; COPIED
 * (bit 63) is never set on compressed entries.
 */
export function writeL2Compressed(table: Buffer, index: number, host: number, len: number, clusterBits: number): void {
  const x = BigInt(62 - (clusterBits - 8));
  const extraSectors = Math.floor((host + len - 1) / 512) - Math.floor(host / 512);
  const v = (1n << 62n) | (BigInt(extraSectors) << x) | BigInt(host);
  table.writeBigUInt64BE(v, index * 8);
}
