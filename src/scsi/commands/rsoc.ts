/**
 * REPORT SUPPORTED OPERATION CODES (SPC-5 6.35) and REPORT SUPPORTED TASK
 * MANAGEMENT FUNCTIONS (SPC-5 6.36), both answered from the command table.
 */
import type { ScsiCommand } from '../command.js';
import type { CommandSpec } from '../command-table.js';
import type { LogicalUnit } from '../logical-unit.js';

const TIMEOUTS_DESCRIPTOR = 12;

/** Command timeouts descriptor (SPC-5 6.35.4): we state no timeouts (0 = not specified). */
function putTimeouts(buf: Buffer, at: number): void {
  buf.writeUInt16BE(TIMEOUTS_DESCRIPTOR - 2, at);
}

export function reportSupportedOperationCodes(lu: LogicalUnit, cmd: ScsiCommand): number {
  const cdb = cmd.cdb;
  const rctd = (cdb[2] & 0x80) !== 0;
  const options = cdb[2] & 0x07;
  const allocation = cdb.readUInt32BE(6);
  const table = lu.commands;
  const offered = (s: CommandSpec) => s.available === undefined || s.available(lu);

  if (options === 0) {
    const perCommand = 8 + (rctd ? TIMEOUTS_DESCRIPTOR : 0);
    const specs = table.all.filter(offered);
    const total = 4 + specs.length * perCommand;
    const buf = lu.reply(total);
    buf.writeUInt32BE(total - 4, 0);
    specs.forEach((spec, i) => {
      const at = 4 + i * perCommand;
      buf[at] = spec.opcode;
      buf.writeUInt16BE(spec.serviceAction ?? 0, at + 2);
      buf[at + 5] = (rctd ? 0x02 : 0) | (spec.serviceAction !== undefined ? 0x01 : 0); // CTDP, SERVACTV
      buf.writeUInt16BE(spec.usage.length, at + 6);
      if (rctd) putTimeouts(buf, at + 8);
    });
    return lu.dataIn(cmd, buf, Math.min(total, allocation));
  }

  const opcode = cdb[3];
  const requestedSa = cdb.readUInt16BE(4);
  const hasSa = table.hasServiceActions(opcode);
  // 001b: opcode without service actions; 010b: opcode + service action;
  // 011b: either (SPC-5). Asking 001b about an opcode with service actions
  // (or 010b without) is an error, per SPC-5 6.35.2.
  if (options > 3 || (options === 1 && hasSa) || (options === 2 && !hasSa)) return lu.invalidCdbField(cmd, 2, 2);
  const found = table.lookup(opcode, hasSa ? requestedSa : 0);
  const spec = typeof found === 'object' && (!hasSa || requestedSa <= 0x1f) && offered(found) ? found : undefined;

  const cdbSize = spec ? spec.usage.length : 0;
  const total = 4 + cdbSize + (rctd ? TIMEOUTS_DESCRIPTOR : 0);
  const buf = lu.reply(total);
  buf[1] = (rctd ? 0x80 : 0) | (spec ? 0x03 : 0x01); // CTDP; SUPPORT 011b supported / 001b not supported
  buf.writeUInt16BE(cdbSize, 2);
  if (spec) buf.set(spec.usage, 4);
  if (rctd) putTimeouts(buf, 4 + cdbSize);
  return lu.dataIn(cmd, buf, Math.min(total, allocation));
}

/**
 * LIO's core executes the task management functions; we report what it
 * implements: ABORT TASK, ABORT TASK SET, LOGICAL UNIT RESET, I_T NEXUS RESET.
 */
export function reportSupportedTaskManagementFunctions(lu: LogicalUnit, cmd: ScsiCommand): number {
  const repd = (cmd.cdb[2] & 0x80) !== 0;
  const allocation = cmd.cdb.readUInt32BE(6);
  const total = repd ? 16 : 4;
  const buf = lu.reply(total);
  buf[0] = 0x80 | 0x40 | 0x08; // ATS, ATSS, LURS
  buf[1] = 0x01; // ITNRS
  if (repd) buf[3] = 0x0c; // ADDITIONAL DATA LENGTH of the extended format
  return lu.dataIn(cmd, buf, Math.min(total, allocation));
}
