/**
 * Table-driven CDB decode. One CommandSpec per opcode (or per opcode +
 * service action for the 0x83 / 0x84 / 0x9E / 0xA3 groups). The same `usage` bytes are
 * reported by REPORT SUPPORTED OPERATION CODES and used to reject CDBs
 * with reserved bits set, so what we advertise and what we accept can
 * never drift apart.
 */
import type { ScsiCommand } from './command.js';
import type { LogicalUnit } from './logical-unit.js';

export type DataDirection = 'none' | 'in' | 'out';

export type CommandRunner = (lu: LogicalUnit, cmd: ScsiCommand) => number | Promise<number>;

export interface CommandSpec {
  readonly opcode: number;
  /** Service action (bits 4-0 of CDB byte 1) for opcodes that have them. */
  readonly serviceAction?: number;
  readonly name: string;
  readonly direction: DataDirection;
  /**
   * CDB usage data (SPC-5 6.35.3): one byte per CDB byte (so its length is
   * the CDB length); a 1 bit marks a bit the device server looks at. Byte 0
   * is the opcode; a SERVICE ACTION field holds the service action value.
   * A CDB bit set outside this mask is a reserved / unsupported bit and the
   * command fails with INVALID FIELD IN CDB pointing at it.
   */
  readonly usage: Uint8Array;
  readonly run: CommandRunner;
  /** May run while a unit attention is pending (SAM-5 5.14: INQUIRY, REQUEST SENSE). */
  readonly ignoresUnitAttention?: boolean;
  /** Whether this LUN offers the command (thin-provisioning-only commands). Default: always. */
  readonly available?: (lu: LogicalUnit) => boolean;
  /** run() handles every failure itself and never throws/rejects (the READ/WRITE fast path). */
  readonly neverFails?: boolean;
}

/** Opcodes whose CDB byte 1 bits 4-0 select a service action. */
export const SERVICE_ACTION_OPCODES: readonly number[] = [0x83, 0x84, 0x9e, 0xa3];

/** Lookup result when the opcode is known but its service action is not. */
export const UNKNOWN_SERVICE_ACTION = Symbol('unknown service action');

export class CommandTable {
  private readonly byOpcode: (CommandSpec | undefined)[] = new Array(256).fill(undefined);
  private readonly bySa = new Map<number, (CommandSpec | undefined)[]>();
  /** Every spec, ordered by opcode then service action (RSOC all-commands order). */
  readonly all: readonly CommandSpec[];

  constructor(specs: readonly CommandSpec[]) {
    for (const opcode of SERVICE_ACTION_OPCODES) this.bySa.set(opcode, new Array(32).fill(undefined));
    for (const spec of specs) {
      if (spec.usage[0] !== spec.opcode) throw new Error(`${spec.name}: usage[0] must be the opcode`);
      const group = this.bySa.get(spec.opcode);
      if (group) {
        if (spec.serviceAction === undefined) throw new Error(`${spec.name}: needs a service action`);
        if (group[spec.serviceAction]) throw new Error(`${spec.name}: duplicate`);
        group[spec.serviceAction] = spec;
      } else {
        if (this.byOpcode[spec.opcode]) throw new Error(`${spec.name}: duplicate`);
        this.byOpcode[spec.opcode] = spec;
      }
    }
    this.all = [...specs].sort((a, b) => a.opcode - b.opcode || (a.serviceAction ?? 0) - (b.serviceAction ?? 0));
  }

  /** True if the opcode uses service actions. */
  hasServiceActions(opcode: number): boolean {
    return this.bySa.has(opcode);
  }

  /**
   * The spec for a CDB's opcode (+ service action). undefined: unknown
   * opcode; UNKNOWN_SERVICE_ACTION: known opcode, unknown service action.
   */
  lookup(opcode: number, serviceAction: number): CommandSpec | undefined | typeof UNKNOWN_SERVICE_ACTION {
    const direct = this.byOpcode[opcode];
    if (direct) return direct;
    const group = this.bySa.get(opcode);
    if (!group) return undefined;
    return group[serviceAction & 0x1f] ?? UNKNOWN_SERVICE_ACTION;
  }
}

/**
 * Index of the first CDB byte with a bit outside the usage mask, or -1.
 * The CDB is at least as long as the usage data (checked by the caller).
 */
export function firstReservedByte(cdb: Buffer, usage: Uint8Array): number {
  for (let i = 1; i < usage.length; i++) {
    if ((cdb[i] & ~usage[i]) !== 0) return i;
  }
  return -1;
}

/** Highest set bit of a byte (0-7). */
export function highestBit(value: number): number {
  return 31 - Math.clz32(value & 0xff);
}

/** Build a usage array from a byte list (reads better in the table). */
export function usage(...bytes: number[]): Uint8Array {
  return Uint8Array.from(bytes);
}
