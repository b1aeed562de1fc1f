/**
 * Typed views over a TCMU mapping, made once. All ring accesses go through
 * these (little-endian host; checked at construction).
 */
import { Buffer } from 'node:buffer';
import { endianness } from 'node:os';
import { Mailbox } from './ring-layout.js';

/** Granularity of the view cache: the kernel hands out data-area blocks of (a multiple of) a page. */
const VIEW_CACHE_SHIFT = 12;

export class RingView {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  /** Where the data area starts (right after the ring), from map start. */
  readonly dataOffset: number;
  /**
   * Buffer views over the data area, one per page-aligned start, reused
   * while the kernel keeps handing out the same block with the same length
   * (the common case: it allocates the lowest free blocks first). Saves a
   * Buffer allocation per iovec on the hot path.
   */
  private readonly views: (Buffer | undefined)[] = [];

  constructor(
    readonly buffer: ArrayBuffer,
    readonly mapSize: number,
    readonly cmdrOffset: number,
    readonly cmdrSize: number,
  ) {
    if (endianness() !== 'LE') throw new Error('tcmu: only little-endian hosts are supported');
    this.u8 = new Uint8Array(buffer, 0, mapSize);
    this.u16 = new Uint16Array(buffer, 0, mapSize >>> 1);
    this.u32 = new Uint32Array(buffer, 0, mapSize >>> 2);
    this.dataOffset = cmdrOffset + cmdrSize;
  }

  /** Mailbox fields readable without ordering (written once by the kernel at setup). */
  static readMailboxHeader(buffer: ArrayBuffer): { version: number; flags: number; cmdrOff: number; cmdrSize: number } {
    const dv = new DataView(buffer);
    return {
      version: dv.getUint16(Mailbox.version, true),
      flags: dv.getUint16(Mailbox.flags, true),
      cmdrOff: dv.getUint32(Mailbox.cmdrOff, true),
      cmdrSize: dv.getUint32(Mailbox.cmdrSize, true),
    };
  }

  /** A Buffer over [start, start + length) of the map (caller checked the bounds). */
  dataView(start: number, length: number): Buffer {
    const rel = start - this.dataOffset;
    if ((rel & ((1 << VIEW_CACHE_SHIFT) - 1)) !== 0) return Buffer.from(this.buffer, start, length);
    const index = rel >>> VIEW_CACHE_SHIFT;
    const views = this.views;
    if (index < views.length) {
      const cached = views[index];
      if (cached !== undefined && cached.length === length) return cached;
    } else {
      // Grow densely (no holes) so the array keeps fast elements.
      while (views.length <= index) views.push(undefined);
    }
    const view = Buffer.from(this.buffer, start, length);
    views[index] = view;
    return view;
  }

  /** u64 at a 4-aligned offset as a JS number (exact below 2^53). */
  u64(offset: number): number {
    return this.u32[offset >>> 2]! + this.u32[(offset >>> 2) + 1]! * 0x1_0000_0000;
  }
}
