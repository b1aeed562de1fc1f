/**
 * Crafting damaged qcow2 images for tests: read the geometry of a real
 * image (made by qemu-img) and patch single fields in place, the way a bit
 * flip or a hostile image would.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';

export interface Geometry {
  clusterSize: number;
  l1Offset: number;
  l1Size: number;
  refcountTableOffset: number;
  refcountTableClusters: number;
}

function readAt(path: string, pos: number, len: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(len);
    readSync(fd, b, 0, len, pos);
    return b;
  } finally {
    closeSync(fd);
  }
}

export function writeAt(path: string, pos: number, data: Buffer): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, pos);
  } finally {
    closeSync(fd);
  }
}

export function u64(v: bigint | number): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(v));
  return b;
}

export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}

export function geometry(path: string): Geometry {
  const h = readAt(path, 0, 72);
  return {
    clusterSize: 2 ** h.readUInt32BE(20),
    l1Size: h.readUInt32BE(36),
    l1Offset: Number(h.readBigUInt64BE(40)),
    refcountTableOffset: Number(h.readBigUInt64BE(48)),
    refcountTableClusters: h.readUInt32BE(56),
  };
}

/** Raw 64-bit entry `i` of the table at `offset`. */
export function entry(path: string, offset: number, i: number): bigint {
  return readAt(path, offset + i * 8, 8).readBigUInt64BE(0);
}

/** Host offset (bits 9..55) of an L1/L2 entry. */
export function hostOf(e: bigint): number {
  return Number(e & 0x00fffffffffffe00n);
}

export function incompatibleBits(path: string): bigint {
  return readAt(path, 72, 8).readBigUInt64BE(0);
}

export const COPIED = 1n << 63n;
export const INCOMPAT_CORRUPT = 2n;

export function bytesOf(path: string, pos: number, len: number): Buffer {
  return readAt(path, pos, len);
}
