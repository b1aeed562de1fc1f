/**
 * ScsiDisk: a direct-access block device (SBC-4) over a LunStore. Decode
 * order per command: table lookup (INVALID COMMAND OPERATION CODE), unit
 * attention (SAM-5 5.14), reserved-bit check against the usage mask
 * (INVALID FIELD IN CDB with a field pointer), then the handler.
 */
import type { Logger } from 'pino';
import type { LunStore } from '../backstore/types.js';
import { ScsiStatus, type ScsiCommand, type ScsiTarget } from './command.js';
import { type CommandSpec, UNKNOWN_SERVICE_ACTION, firstReservedByte, highestBit } from './command-table.js';
import type { TargetPortGroupSource } from './alua.js';
import type { CopyEndpoint, CopyPeerLookup } from './copy-peers.js';
import type { DiskIdentity } from './identity.js';
import { LogicalUnit, isThenable } from './logical-unit.js';
import { DISK_COMMANDS } from './opcodes.js';
import { Asc, SenseKey, writeSense } from './sense.js';

export interface ScsiDiskOptions {
  log?: Logger;
  /**
   * The disk this one replaces on the same LUN (a new store after a
   * RECONFIG or a snapshot revert). Its mode page settings (WCE, D_SENSE)
   * and pending unit attentions carry over instead of being reset, and the
   * initiator is told NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED
   * (06/28/00) rather than POWER ON, RESET (06/29/00): after a power on
   * SAM-5 has the mode pages back at their defaults, which these are not.
   */
  replaces?: ScsiDisk;
  /**
   * With `replaces`: the store was reopened but its contents did not change
   * (e.g. a snapshot was created), so no MEDIUM MAY HAVE CHANGED is raised;
   * settings and pending unit attentions still carry over.
   */
  mediumUnchanged?: boolean;
  /** Finds the daemon's other LUNs by NAA id, for EXTENDED COPY between them. */
  copyPeers?: CopyPeerLookup;
  /** CopyEndpoint.hold for this disk: the owner's count of peers' copies in progress. */
  holdForCopy?: () => () => void;
  /** Where the LUN's ALUA target port groups are read (see ./alua.ts); absent: the LUN reports no ALUA. */
  portGroups?: TargetPortGroupSource;
}

export class ScsiDisk implements ScsiTarget {
  private readonly lu: LogicalUnit;

  constructor(store: LunStore, identity: DiskIdentity, opts: ScsiDiskOptions = {}) {
    this.lu = new LogicalUnit(store, identity, opts.log, DISK_COMMANDS);
    this.lu.copyPeers = opts.copyPeers;
    this.lu.hold = opts.holdForCopy;
    this.lu.portGroups = opts.portGroups;
    const before = opts.replaces?.lu;
    if (before === undefined) {
      // SAM-5: the first command after power on sees this once.
      this.lu.addUnitAttention(0x29, 0x00);
      return;
    }
    this.lu.dSense = before.dSense;
    // WCE turned off by MODE SELECT stays off; otherwise it follows the new
    // store (WCE cannot be on without a volatile cache to enable).
    if (before.store.writeCache && !before.wce) this.lu.wce = false;
    for (const code of before.unitAttentions) this.lu.addUnitAttention(code >> 8, code & 0xff);
    if (!opts.mediumUnchanged) this.lu.addUnitAttention(0x28, 0x00); // NOT READY TO READY CHANGE, MEDIUM MAY HAVE CHANGED
  }

  execute(cmd: ScsiCommand): number | Promise<number> {
    const lu = this.lu;
    const cdb = cmd.cdb;
    cmd.dataInLength = 0; // nothing produced until a data-in command says how much
    if (cdb.length === 0) return lu.check(cmd, SenseKey.IllegalRequest, Asc.InvalidCommandOperationCode);
    const found = lu.commands.lookup(cdb[0], cdb.length > 1 ? cdb[1] : 0);
    if (found === UNKNOWN_SERVICE_ACTION) return lu.invalidCdbField(cmd, 1, 4);
    if (found === undefined || cdb.length < found.usage.length || (found.available !== undefined && !found.available(lu))) {
      return lu.check(cmd, SenseKey.IllegalRequest, Asc.InvalidCommandOperationCode);
    }
    if (lu.unitAttentions.length !== 0 && found.ignoresUnitAttention !== true) {
      lu.takeUnitAttention(cmd.sense);
      return ScsiStatus.CheckCondition;
    }
    const reserved = firstReservedByte(cdb, found.usage);
    if (reserved >= 0) return lu.invalidCdbField(cmd, reserved, highestBit(cdb[reserved] & ~found.usage[reserved]));
    return this.run(found, cmd);
  }

  /** Who the disk says it is (INQUIRY, VPD 0x80 / 0x83). */
  get identity(): DiskIdentity {
    return this.lu.identity;
  }

  /** This disk as the source or destination of another LUN's EXTENDED COPY. */
  copyEndpoint(): CopyEndpoint {
    return this.lu;
  }

  /** Queue a unit attention (e.g. 2A/09 CAPACITY DATA HAS CHANGED), reported once to the next command. */
  addUnitAttention(asc: number, ascq: number): void {
    this.lu.addUnitAttention(asc, ascq);
  }

  /**
   * Re-read the store's size after a resize. When the capacity changed,
   * CAPACITY DATA HAS CHANGED is queued (once, even if the caller adds it too)
   * so the initiator rereads the capacity.
   */
  refresh(): void {
    if (this.lu.refreshCapacity()) this.lu.addUnitAttention(0x2a, 0x09);
  }

  private run(spec: CommandSpec, cmd: ScsiCommand): number | Promise<number> {
    // A data-out command's buffer holds the initiator's own bytes. (TCMU
    // entries do not carry the transfer direction: if the initiator declared
    // data-in for a WRITE, the data area's old bytes became the payload and
    // reached the medium before any completion; zeroing them afterwards would
    // cost a memset per write and hide nothing.)
    if (spec.direction === 'out') cmd.dataInLength = cmd.iovLength;
    let result: number | Promise<number>;
    try {
      result = spec.run(this.lu, cmd);
    } catch (err) {
      return this.internalFailure(cmd, spec, err);
    }
    if (spec.neverFails === true || !isThenable(result)) return result;
    return result.then(undefined, (err: unknown) => this.internalFailure(cmd, spec, err));
  }

  /** A bug in the emulation, not a store error: HARDWARE ERROR / INTERNAL TARGET FAILURE. */
  private internalFailure(cmd: ScsiCommand, spec: CommandSpec, err: unknown): number {
    this.lu.log?.error({ err, command: spec.name }, 'SCSI emulation failed');
    writeSense(cmd.sense, this.lu.dSense, SenseKey.HardwareError, Asc.InternalTargetFailure);
    return ScsiStatus.CheckCondition;
  }
}
