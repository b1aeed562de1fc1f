/**
 * The command table of the emulated disk: one line per command, with its
 * CDB usage data (see CommandSpec.usage). Bits not in a mask are reserved,
 * obsolete or features we do not implement (RDPROTECT/WRPROTECT: no
 * protection information; ANCHOR: no anchored state; NACA/LINK in the
 * control byte), so setting them yields INVALID FIELD IN CDB.
 */
import { type CommandSpec, CommandTable, usage } from './command-table.js';
import type { LogicalUnit } from './logical-unit.js';
import { readCapacity10, readCapacity16 } from './commands/capacity.js';
import { compareAndWrite } from './commands/compare-and-write.js';
import { extendedCopy } from './commands/extended-copy.js';
import { inquiry } from './commands/inquiry.js';
import { getLbaStatus } from './commands/lba-status.js';
import { modeSelect10, modeSelect6 } from './commands/mode-select.js';
import { modeSense10, modeSense6 } from './commands/mode-sense.js';
import { read10, read12, read16, read6, write10, write12, write16, write6 } from './commands/read-write.js';
import { reportSupportedOperationCodes, reportSupportedTaskManagementFunctions } from './commands/rsoc.js';
import { reportTargetPortGroups } from './commands/report-target-port-groups.js';
import { receiveCopyOperatingParameters } from './commands/receive-copy-results.js';
import { requestSense, startStopUnit, testUnitReady } from './commands/spc-basic.js';
import { synchronizeCache10, synchronizeCache16 } from './commands/sync-cache.js';
import { unmap } from './commands/unmap.js';
import { verify10, verify16, writeAndVerify10, writeAndVerify16 } from './commands/verify.js';
import { writeSame10, writeSame16 } from './commands/write-same.js';

const thinOnly = (lu: LogicalUnit) => lu.store.thin;
const withPortGroups = (lu: LogicalUnit) => lu.portGroups !== undefined;

const FF4 = [0xff, 0xff, 0xff, 0xff];
const FF8 = [...FF4, ...FF4];
/** Byte 1 of READ/WRITE (10/12/16) and COMPARE AND WRITE: DPO, FUA. */
const DPO_FUA = 0x18;
const GROUP = 0x3f;

const specs: CommandSpec[] = [
  { opcode: 0x00, name: 'TEST UNIT READY', direction: 'none', usage: usage(0x00, 0, 0, 0, 0, 0), run: testUnitReady },
  { opcode: 0x03, name: 'REQUEST SENSE', direction: 'in', usage: usage(0x03, 0x01, 0, 0, 0xff, 0), run: requestSense, ignoresUnitAttention: true },
  { opcode: 0x08, name: 'READ(6)', direction: 'in', usage: usage(0x08, 0x1f, 0xff, 0xff, 0xff, 0), run: read6, neverFails: true },
  { opcode: 0x0a, name: 'WRITE(6)', direction: 'out', usage: usage(0x0a, 0x1f, 0xff, 0xff, 0xff, 0), run: write6, neverFails: true },
  { opcode: 0x12, name: 'INQUIRY', direction: 'in', usage: usage(0x12, 0x01, 0xff, 0xff, 0xff, 0), run: inquiry, ignoresUnitAttention: true },
  { opcode: 0x15, name: 'MODE SELECT(6)', direction: 'out', usage: usage(0x15, 0x11, 0, 0, 0xff, 0), run: modeSelect6 },
  { opcode: 0x1a, name: 'MODE SENSE(6)', direction: 'in', usage: usage(0x1a, 0x08, 0xff, 0xff, 0xff, 0), run: modeSense6 },
  { opcode: 0x1b, name: 'START STOP UNIT', direction: 'none', usage: usage(0x1b, 0x01, 0, 0x0f, 0xf7, 0), run: startStopUnit },
  // LBA and PMI of READ CAPACITY are obsolete in SBC-4: accepted, ignored.
  { opcode: 0x25, name: 'READ CAPACITY(10)', direction: 'in', usage: usage(0x25, 0, ...FF4, 0, 0, 0x01, 0), run: readCapacity10 },
  { opcode: 0x28, name: 'READ(10)', direction: 'in', usage: usage(0x28, DPO_FUA, ...FF4, GROUP, 0xff, 0xff, 0), run: read10, neverFails: true },
  { opcode: 0x2a, name: 'WRITE(10)', direction: 'out', usage: usage(0x2a, DPO_FUA, ...FF4, GROUP, 0xff, 0xff, 0), run: write10, neverFails: true },
  // Byte 1: DPO, BYTCHK (one bit).
  { opcode: 0x2e, name: 'WRITE AND VERIFY(10)', direction: 'out', usage: usage(0x2e, 0x12, ...FF4, GROUP, 0xff, 0xff, 0), run: writeAndVerify10 },
  // Byte 1: DPO, BYTCHK (two bits).
  { opcode: 0x2f, name: 'VERIFY(10)', direction: 'out', usage: usage(0x2f, 0x16, ...FF4, GROUP, 0xff, 0xff, 0), run: verify10 },
  { opcode: 0x35, name: 'SYNCHRONIZE CACHE(10)', direction: 'none', usage: usage(0x35, 0x02, ...FF4, GROUP, 0xff, 0xff, 0), run: synchronizeCache10 },
  { opcode: 0x41, name: 'WRITE SAME(10)', direction: 'out', usage: usage(0x41, 0x08, ...FF4, GROUP, 0xff, 0xff, 0), run: writeSame10 },
  { opcode: 0x42, name: 'UNMAP', direction: 'out', usage: usage(0x42, 0, 0, 0, 0, 0, GROUP, 0xff, 0xff, 0), run: unmap, available: thinOnly },
  { opcode: 0x55, name: 'MODE SELECT(10)', direction: 'out', usage: usage(0x55, 0x11, 0, 0, 0, 0, 0, 0xff, 0xff, 0), run: modeSelect10 },
  { opcode: 0x5a, name: 'MODE SENSE(10)', direction: 'in', usage: usage(0x5a, 0x18, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0), run: modeSense10 },
  { opcode: 0x83, serviceAction: 0x00, name: 'EXTENDED COPY(LID1)', direction: 'out', usage: usage(0x83, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, ...FF4, 0, 0), run: extendedCopy },
  { opcode: 0x84, serviceAction: 0x03, name: 'RECEIVE COPY RESULTS(LID1) OPERATING PARAMETERS', direction: 'in', usage: usage(0x84, 0x03, 0xff, 0, 0, 0, 0, 0, 0, 0, ...FF4, 0, 0), run: receiveCopyOperatingParameters },
  { opcode: 0x88, name: 'READ(16)', direction: 'in', usage: usage(0x88, DPO_FUA, ...FF8, ...FF4, GROUP, 0), run: read16, neverFails: true },
  { opcode: 0x89, name: 'COMPARE AND WRITE', direction: 'out', usage: usage(0x89, DPO_FUA, ...FF8, 0, 0, 0, 0xff, GROUP, 0), run: compareAndWrite },
  { opcode: 0x8a, name: 'WRITE(16)', direction: 'out', usage: usage(0x8a, DPO_FUA, ...FF8, ...FF4, GROUP, 0), run: write16, neverFails: true },
  { opcode: 0x8e, name: 'WRITE AND VERIFY(16)', direction: 'out', usage: usage(0x8e, 0x12, ...FF8, ...FF4, GROUP, 0), run: writeAndVerify16 },
  { opcode: 0x8f, name: 'VERIFY(16)', direction: 'out', usage: usage(0x8f, 0x16, ...FF8, ...FF4, GROUP, 0), run: verify16 },
  { opcode: 0x91, name: 'SYNCHRONIZE CACHE(16)', direction: 'none', usage: usage(0x91, 0x02, ...FF8, ...FF4, GROUP, 0), run: synchronizeCache16 },
  // Byte 1: UNMAP, NDOB.
  { opcode: 0x93, name: 'WRITE SAME(16)', direction: 'out', usage: usage(0x93, 0x09, ...FF8, ...FF4, GROUP, 0), run: writeSame16 },
  { opcode: 0x9e, serviceAction: 0x10, name: 'READ CAPACITY(16)', direction: 'in', usage: usage(0x9e, 0x10, ...FF8, ...FF4, 0x01, 0), run: readCapacity16 },
  { opcode: 0x9e, serviceAction: 0x12, name: 'GET LBA STATUS', direction: 'in', usage: usage(0x9e, 0x12, ...FF8, ...FF4, 0, 0), run: getLbaStatus, available: thinOnly },
  // Byte 1: PARAMETER DATA FORMAT (bits 7-5) over the service action.
  { opcode: 0xa3, serviceAction: 0x0a, name: 'REPORT TARGET PORT GROUPS', direction: 'in', usage: usage(0xa3, 0xea, 0, 0, 0, 0, ...FF4, 0, 0), run: reportTargetPortGroups, available: withPortGroups },
  { opcode: 0xa3, serviceAction: 0x0c, name: 'REPORT SUPPORTED OPERATION CODES', direction: 'in', usage: usage(0xa3, 0x0c, 0x87, 0xff, 0xff, 0xff, ...FF4, 0, 0), run: reportSupportedOperationCodes },
  { opcode: 0xa3, serviceAction: 0x0d, name: 'REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', direction: 'in', usage: usage(0xa3, 0x0d, 0x80, 0, 0, 0, ...FF4, 0, 0), run: reportSupportedTaskManagementFunctions },
  { opcode: 0xa8, name: 'READ(12)', direction: 'in', usage: usage(0xa8, DPO_FUA, ...FF4, ...FF4, GROUP, 0), run: read12, neverFails: true },
  { opcode: 0xaa, name: 'WRITE(12)', direction: 'out', usage: usage(0xaa, DPO_FUA, ...FF4, ...FF4, GROUP, 0), run: write12, neverFails: true },
];

/** The direct-access block device command set (immutable, shared by every disk). */
export const DISK_COMMANDS = new CommandTable(specs);
