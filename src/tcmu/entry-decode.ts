/**
 * Decode a CMD ring entry into a pooled CommandSlot: copy the CDB out,
 * turn the iovecs into Buffer views over the data area. Every offset the
 * kernel gave is checked against the map; a bad entry is reported (the
 * engine fails that command with INTERNAL TARGET FAILURE), never trusted.
 */
import type { Buffer } from 'node:buffer';
import type { CommandSlot } from './command-slot.js';
import { CmdReq, MAX_CDB_LENGTH, cdbLength } from './ring-layout.js';
import type { RingView } from './ring-view.js';

/**
 * Fill `slot` from the entry at map offset `base` of length `entryLen`.
 * Returns null on success, or why the entry is malformed.
 */
export function decodeCommand(view: RingView, slot: CommandSlot, base: number, entryLen: number): string | null {
  const u32 = view.u32;
  const word = base >>> 2;
  const dataCount = u32[word + (CmdReq.iovCnt >>> 2)]!;
  const bidiCount = u32[word + (CmdReq.iovBidiCnt >>> 2)]!;
  const difCount = u32[word + (CmdReq.iovDifCnt >>> 2)]!;
  const iovTotal = dataCount + bidiCount + difCount;
  if (CmdReq.iov + CmdReq.iovSize * iovTotal > entryLen) {
    return `${iovTotal} iovecs do not fit in a ${entryLen}-byte entry`;
  }

  const cdbOff = view.u64(base + CmdReq.cdbOff);
  const mapSize = view.mapSize;
  if (cdbOff >= mapSize) return cdbError(cdbOff, 0, mapSize);
  const opcode = view.u8[cdbOff]!;
  const byte7 = opcode === 0x7f && cdbOff + 8 <= mapSize ? view.u8[cdbOff + 7]! : 0;
  const cdbLen = cdbLength(opcode, byte7);
  if (cdbLen > MAX_CDB_LENGTH || cdbOff + cdbLen > mapSize) return cdbError(cdbOff, cdbLen, mapSize);
  slot.setCdb(view.u8, cdbOff, cdbLen);

  let iovOff = base + CmdReq.iov;
  if (dataCount > 0) {
    const views = slot.dataArray(dataCount);
    let total = 0;
    for (let i = 0; i < dataCount; i++, iovOff += CmdReq.iovSize) {
      const buf = dataView(view, iovOff);
      if (buf === null) return iovError(view, iovOff, i);
      views[i] = buf;
      total += buf.length;
    }
    slot.iov = views;
    slot.iovLength = total;
  }
  if (bidiCount > 0) {
    const views = slot.bidiArray(bidiCount);
    let total = 0;
    for (let i = 0; i < bidiCount; i++, iovOff += CmdReq.iovSize) {
      const buf = dataView(view, iovOff);
      if (buf === null) return iovError(view, iovOff, dataCount + i);
      views[i] = buf;
      total += buf.length;
    }
    slot.bidiIov = views;
    slot.bidiLength = total;
  }
  // Protection-information iovecs are not supported (no DIF); they are
  // counted in the entry size above but not exposed.
  return null;
}

/** A Buffer over the iovec at map offset `iovOff`, or null if it leaves the data area. */
function dataView(view: RingView, iovOff: number): Buffer | null {
  const start = view.u64(iovOff + CmdReq.iovBase);
  const length = view.u64(iovOff + CmdReq.iovLen);
  if (start < view.dataOffset || start + length > view.mapSize) return null;
  return view.dataView(start, length);
}

/**
 * Why the CDB at `cdbOff` (`cdbLen` bytes, 0 before it is known) is bad.
 * The messages live here, not in decodeCommand: there, TurboFan merged the
 * two messages' identical conversions of cdbOff to a string into one and
 * ran it ahead of both checks, on every command (an allocation per command;
 * `Builtins_NumberToString` in profiles of the ring engine).
 */
function cdbError(cdbOff: number, cdbLen: number, mapSize: number): string {
  if (cdbOff >= mapSize) return `CDB offset ${cdbOff} outside the map`;
  if (cdbLen > MAX_CDB_LENGTH) return `CDB length ${cdbLen} exceeds ${MAX_CDB_LENGTH}`;
  return `CDB at ${cdbOff} (+${cdbLen}) runs past the map`;
}

function iovError(view: RingView, iovOff: number, index: number): string {
  const start = view.u64(iovOff + CmdReq.iovBase);
  const length = view.u64(iovOff + CmdReq.iovLen);
  return `iovec ${index} [${start}, +${length}) outside the data area [${view.dataOffset}, ${view.mapSize})`;
}
