/**
 * A tiny ScsiTarget for ring tests (independent of src/scsi): a RAM array
 * serving READ(10)/WRITE(10) plus a short INQUIRY, each command completing
 * synchronously or asynchronously as the test chooses.
 */
import type { ScsiCommand, ScsiTarget } from '../../src/scsi/command.js';

export const BLOCK = 512;

export type Timing = 'sync' | 'microtask' | 'immediate' | 'random';

export function read10(lba: number, blocks: number): Buffer {
  const cdb = Buffer.alloc(10);
  cdb[0] = 0x28;
  cdb.writeUInt32BE(lba, 2);
  cdb.writeUInt16BE(blocks, 7);
  return cdb;
}

export function write10(lba: number, blocks: number): Buffer {
  const cdb = read10(lba, blocks);
  cdb[0] = 0x2a;
  return cdb;
}

export function inquiry(allocationLength: number): Buffer {
  const cdb = Buffer.alloc(6);
  cdb[0] = 0x12;
  cdb.writeUInt16BE(allocationLength, 3);
  return cdb;
}

function setSense(cmd: ScsiCommand, key: number, asc: number, ascq: number): number {
  cmd.sense[0] = 0x70;
  cmd.sense[2] = key;
  cmd.sense[7] = 10;
  cmd.sense[12] = asc;
  cmd.sense[13] = ascq;
  return 0x02;
}

/** Copy between a flat range of `ram` and a scattered iov list. */
function copyIov(ram: Buffer, offset: number, iov: readonly Buffer[], toIov: boolean): void {
  let at = offset;
  for (const buf of iov) {
    if (toIov) ram.copy(buf, 0, at, at + buf.length);
    else buf.copy(ram, at);
    at += buf.length;
  }
}

export class RamTarget implements ScsiTarget {
  readonly ram: Buffer;
  executed = 0;
  /** Commands seen with `aborted` set at completion time, by first CDB byte + LBA. */
  abortedSeen: ScsiCommand[] = [];
  private rng = 12345;
  /** Async commands parked until the test releases them (timing 'manual'). */
  readonly parked: (() => void)[] = [];

  constructor(
    blocks: number,
    public timing: Timing | 'manual' = 'sync',
  ) {
    this.ram = Buffer.alloc(blocks * BLOCK);
  }

  execute(cmd: ScsiCommand): number | Promise<number> {
    this.executed++;
    const timing = this.timing;
    if (timing === 'sync') return this.run(cmd);
    return new Promise<number>((resolve) => {
      const finish = () => {
        if (cmd.aborted) this.abortedSeen.push(cmd);
        resolve(this.run(cmd));
      };
      if (timing === 'manual') this.parked.push(finish);
      else if (timing === 'microtask') queueMicrotask(finish);
      else if (timing === 'immediate') setImmediate(finish);
      else {
        const r = this.nextRandom() % 4;
        if (r === 0) finish();
        else if (r === 1) setImmediate(finish);
        else setTimeout(finish, this.nextRandom() % 5);
      }
    });
  }

  /** Release parked commands in the given order (indices into `parked`), or all. */
  releaseParked(order?: number[]): void {
    const parked = this.parked.splice(0);
    for (const i of order ?? parked.map((_, i) => i)) parked[i]!();
  }

  private run(cmd: ScsiCommand): number {
    const cdb = cmd.cdb;
    switch (cdb[0]) {
      case 0x28:
      case 0x2a: {
        const lba = cdb.readUInt32BE(2);
        const bytes = cdb.readUInt16BE(7) * BLOCK;
        if (lba * BLOCK + bytes > this.ram.length) return setSense(cmd, 0x05, 0x21, 0x00);
        if (bytes !== cmd.iovLength) return setSense(cmd, 0x05, 0x24, 0x00);
        copyIov(this.ram, lba * BLOCK, cmd.iov, cdb[0] === 0x28);
        cmd.dataInLength = cmd.iovLength; // READ produced it all; WRITE's buffer is the initiator's own
        return 0;
      }
      case 0x12: {
        // 36 bytes of standard INQUIRY data, fewer if the allocation is smaller.
        const data = Buffer.alloc(36);
        data[4] = 31;
        data.write('TCMU-TS ', 8, 'latin1');
        const n = Math.min(36, cmd.iovLength);
        let at = 0;
        for (const buf of cmd.iov) {
          const take = Math.min(buf.length, n - at);
          if (take <= 0) break;
          data.copy(buf, 0, at, at + take);
          at += take;
        }
        cmd.dataInLength = n;
        return 0;
      }
      default:
        return setSense(cmd, 0x05, 0x20, 0x00);
    }
  }

  private nextRandom(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }
}
