/**
 * EXTENDED COPY (LID1) (SPC-4 6.4, opcode 83h service action 00h): the
 * copy offload VMware VAAI calls XCOPY. Supported: identification CSCD
 * descriptors (E4h) naming a block device by its NAA designator, and
 * block-to-block segment descriptors (02h). The copy runs inside the
 * daemon, store to store, between any LUNs it serves (the one that got the
 * command included); a LUN it does not serve is COPY TARGET DEVICE NOT
 * REACHABLE. The whole parameter list is validated before the first block
 * moves, so a bad list changes nothing. Limits (reported by RECEIVE COPY
 * RESULTS, operating parameters) keep one command near WRITE SAME's
 * budget (./block-limits.ts).
 */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import { gather } from '../../iov.js';
import { readU64 } from '../be64.js';
import type { CopyEndpoint } from '../copy-peers.js';
import { naaBytes } from '../identity.js';
import type { LogicalUnit } from '../logical-unit.js';
import { IoKind } from '../sense-map.js';
import { Asc, SenseKey, writeSense } from '../sense.js';

const HEADER = 16;
const CSCD_LENGTH = 32;
const SEGMENT_LENGTH = 28;
const IDENTIFICATION_CSCD = 0xe4;
const BLOCK_TO_BLOCK = 0x02;

/** Operating parameters (also what RECEIVE COPY RESULTS reports). */
export const COPY_LIMITS = {
  /** VMware names a source and a destination; 8 leaves room for more. */
  maxCscdDescriptors: 8,
  maxSegmentDescriptors: 8,
  /** 32 MiB per segment x 8 segments = the 256 MiB WRITE SAME budget. */
  maxSegmentBytes: 32 << 20,
  get maxDescriptorListLength(): number {
    return this.maxCscdDescriptors * CSCD_LENGTH + this.maxSegmentDescriptors * SEGMENT_LENGTH;
  },
  /** Descriptor type codes implemented, ascending. */
  implementedDescriptors: [BLOCK_TO_BLOCK, IDENTIFICATION_CSCD],
} as const;

/** Copies go through a buffer of at most this size. */
const CHUNK_BYTES = 1 << 20;


interface Segment {
  source: CopyEndpoint;
  destination: CopyEndpoint;
  sourceNaa: Buffer;
  destinationNaa: Buffer;
  blocks: number;
  sourceLba: number;
  destinationLba: number;
}

export function extendedCopy(lu: LogicalUnit, cmd: ScsiCommand): number | Promise<number> {
  const listLength = cmd.cdb.readUInt32BE(10);
  // SPC-4: a parameter list length of zero copies nothing and is not an error.
  if (listLength === 0) return ScsiStatus.Good;
  if (listLength > cmd.iovLength) return lu.invalidCdbField(cmd, 10);
  if (listLength < HEADER) return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  // Never read (or allocate) more than the largest list we accept.
  const list = Buffer.alloc(Math.min(listLength, HEADER + COPY_LIMITS.maxDescriptorListLength));
  gather(cmd.iov, 0, list, 0, list.length);

  const cscdLength = list.readUInt16BE(2);
  const segmentsLength = list.readUInt32BE(8);
  if (list.readUInt32BE(12) !== 0) return lu.invalidParameter(cmd, 12); // inline data: not supported
  // SPC-4 6.4.3: descriptor lists longer than MAXIMUM DESCRIPTOR LIST LENGTH
  // are a PARAMETER LIST LENGTH ERROR (checked before the counts, as libiscsi's
  // ExtendedCopy.DescrLimits expects).
  if (cscdLength + segmentsLength > COPY_LIMITS.maxDescriptorListLength) {
    return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  }
  if (cscdLength % CSCD_LENGTH !== 0) return lu.invalidParameter(cmd, 2);
  if (cscdLength / CSCD_LENGTH > COPY_LIMITS.maxCscdDescriptors) {
    return lu.check(cmd, SenseKey.IllegalRequest, Asc.TooManyTargetDescriptors);
  }
  if (segmentsLength > COPY_LIMITS.maxSegmentDescriptors * SEGMENT_LENGTH) {
    return lu.check(cmd, SenseKey.IllegalRequest, Asc.TooManySegmentDescriptors);
  }
  if (HEADER + cscdLength + segmentsLength > listLength) {
    return lu.check(cmd, SenseKey.IllegalRequest, Asc.ParameterListLengthError);
  }

  // CSCD descriptors: resolved lazily, a LUN only has to be reachable if a segment uses it.
  const cscdCount = cscdLength / CSCD_LENGTH;
  const designators: Buffer[] = [];
  for (let i = 0; i < cscdCount; i++) {
    const at = HEADER + i * CSCD_LENGTH;
    if (list[at] !== IDENTIFICATION_CSCD) return lu.check(cmd, SenseKey.IllegalRequest, Asc.UnsupportedTargetDescriptorTypeCode);
    const bad = badIdentification(list, at);
    if (bad >= 0) return lu.invalidParameter(cmd, bad);
    designators.push(list.subarray(at + 8, at + 8 + list[at + 7]));
  }

  const segments: Segment[] = [];
  let at = HEADER + cscdLength;
  const end = at + segmentsLength;
  while (at < end) {
    if (list[at] !== BLOCK_TO_BLOCK) return lu.check(cmd, SenseKey.IllegalRequest, Asc.UnsupportedSegmentDescriptorTypeCode);
    if (at + SEGMENT_LENGTH > end || list.readUInt16BE(at + 2) !== SEGMENT_LENGTH - 4) return lu.invalidParameter(cmd, at + 2);
    const from = list.readUInt16BE(at + 4);
    const to = list.readUInt16BE(at + 6);
    // A copy target the list does not describe, or one not served here, is a
    // copy that cannot be done: COPY ABORTED (what LIO answers, and what
    // libiscsi's ExtendedCopy.ValidSegDescr expects).
    if (from >= cscdCount || to >= cscdCount) return copyAborted(lu, cmd, Asc.CopyTargetDeviceNotReachable);
    const source = resolve(lu, designators[from]!);
    const destination = resolve(lu, designators[to]!);
    if (!source || !destination) return copyAborted(lu, cmd, Asc.CopyTargetDeviceNotReachable);
    // DC (byte 1 bit 1) picks which side's blocks NUMBER OF BLOCKS counts: the same when the sizes agree.
    if (source.blockSize !== destination.blockSize) return lu.invalidParameter(cmd, at + 4);
    const blocks = list.readUInt16BE(at + 10);
    if (blocks * source.blockSize > COPY_LIMITS.maxSegmentBytes) return lu.invalidParameter(cmd, at + 10);
    const sourceLba = readU64(list, at + 12);
    const destinationLba = readU64(list, at + 20);
    // Past the end of a copy target: COPY ABORTED too (libiscsi accepts only
    // NO ADDITIONAL SENSE, UNREACHABLE COPY TARGET or COPY TARGET DEVICE NOT
    // REACHABLE with it, so no LBA OUT OF RANGE detail).
    if (sourceLba + blocks > source.capacityBlocks || destinationLba + blocks > destination.capacityBlocks) {
      return copyAborted(lu, cmd, Asc.NoAdditionalSense);
    }
    if (destination.store.readOnly) return lu.writeProtected(cmd);
    segments.push({ source, destination, sourceNaa: designators[from]!, destinationNaa: designators[to]!, blocks, sourceLba, destinationLba });
    at += SEGMENT_LENGTH;
  }
  return copySegments(lu, cmd, segments);
}

/**
 * Byte offset of the first field we cannot honour in an identification
 * CSCD descriptor, or -1: a direct-access device (type 0) named by a
 * binary NAA designator of the logical unit (what VPD 0x83 reports).
 */
function badIdentification(list: Buffer, at: number): number {
  if ((list[at + 1] & 0x3f) !== 0) return at + 1; // NUL, PERIPHERAL DEVICE TYPE
  if ((list[at + 4] & 0x0f) !== 0x1) return at + 4; // CODE SET binary
  if ((list[at + 5] & 0x30) !== 0x00) return at + 5; // ASSOCIATION logical unit
  if ((list[at + 5] & 0x0f) !== 0x3) return at + 5; // DESIGNATOR TYPE NAA
  const length = list[at + 7];
  if (length !== 8 && length !== 16) return at + 7;
  return -1;
}

/** This LUN itself, or another one of the daemon. */
function resolve(lu: LogicalUnit, naa: Buffer): CopyEndpoint | undefined {
  if (naa.equals(naaBytes(lu.identity))) return lu;
  return lu.copyPeers?.(naa);
}

/** COPY ABORTED sense (SPC-4 6.4.3): the list was valid, the copy could not be done. */
function copyAborted(lu: LogicalUnit, cmd: ScsiCommand, asc: Asc): number {
  writeSense(cmd.sense, lu.dSense, SenseKey.CopyAborted, asc);
  return ScsiStatus.CheckCondition;
}

async function copySegments(lu: LogicalUnit, cmd: ScsiCommand, segments: Segment[]): Promise<number> {
  let phase = IoKind.Read;
  try {
    for (const s of segments) {
      const bs = s.source.blockSize;
      const chunkBlocks = Math.max(1, Math.min(s.blocks, Math.floor(CHUNK_BYTES / bs)));
      const buffer = Buffer.allocUnsafe(chunkBlocks * bs);
      const release = await s.destination.lock.acquire(s.destinationLba, s.blocks);
      try {
        for (let done = 0; done < s.blocks; done += chunkBlocks) {
          if (cmd.aborted) return ScsiStatus.TaskAborted;
          // Another LUN may stop, fail or swap its store (RECONFIG, snapshot
          // revert) while this copy runs: it must still be the one served.
          if (resolve(lu, s.sourceNaa) !== s.source || resolve(lu, s.destinationNaa) !== s.destination) {
            return copyAborted(lu, cmd, Asc.CopyTargetDeviceNotReachable);
          }
          const n = Math.min(chunkBlocks, s.blocks - done);
          const piece = n === chunkBlocks ? buffer : buffer.subarray(0, n * bs);
          // This LUN's own store stays open while its command runs; a peer's
          // only while held (taken right after the check above, no await between).
          const releaseSource = s.source === lu ? undefined : s.source.hold?.();
          const releaseDestination = s.destination === lu ? undefined : s.destination.hold?.();
          try {
            phase = IoKind.Read;
            await s.source.store.read((s.sourceLba + done) * bs, [piece], s.source.store.abortable ? { signal: cmd.signal } : undefined);
            phase = IoKind.Write;
            const fua = !s.destination.wce;
            await s.destination.store.write((s.destinationLba + done) * bs, [piece], s.destination.store.abortable ? { fua, signal: cmd.signal } : { fua });
          } finally {
            releaseSource?.();
            releaseDestination?.();
          }
        }
      } finally {
        release();
      }
    }
  } catch (err) {
    return lu.storeFailed(cmd, err, phase);
  }
  return ScsiStatus.Good;
}
