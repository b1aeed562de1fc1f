/** TEST UNIT READY, REQUEST SENSE, START STOP UNIT. */
import { ScsiStatus, type ScsiCommand } from '../command.js';
import type { LogicalUnit } from '../logical-unit.js';
import { Asc, SenseKey, senseLength, writeSense } from '../sense.js';

/** Always ready: the backstore is open before the LUN is exported. */
export function testUnitReady(): number {
  return ScsiStatus.Good;
}

/**
 * REQUEST SENSE (SPC-5 6.39). We use autosense, so there is never deferred
 * sense except a pending unit attention, which this command reports and
 * clears (SAM-5 5.14). DESC selects the format, independent of D_SENSE.
 */
export function requestSense(lu: LogicalUnit, cmd: ScsiCommand): number {
  const descriptor = (cmd.cdb[1] & 0x01) !== 0;
  const allocation = cmd.cdb[4];
  const buf = lu.reply(32);
  if (lu.unitAttentions.length > 0) {
    const code = lu.unitAttentions.shift()!;
    writeSense(buf, descriptor, SenseKey.UnitAttention, code);
  } else {
    writeSense(buf, descriptor, SenseKey.NoSense, Asc.NoAdditionalSense);
  }
  return lu.dataIn(cmd, buf, Math.min(senseLength(buf), allocation));
}

/**
 * START STOP UNIT (SBC-4 5.27): a virtual disk has no spindle or medium to
 * eject; accepted so Linux's sd (suspend/resume, eject) and sg_start work.
 * sd sends SYNCHRONIZE CACHE before a stop, so no flush is needed here.
 */
export function startStopUnit(): number {
  return ScsiStatus.Good;
}
