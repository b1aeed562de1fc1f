/**
 * The kernel's configfs view of a TCMU device:
 * /sys/kernel/config/target/core/user_<hba>/<dev>/{attrib,action,wwn}/...
 * Plain synchronous file I/O: these are tiny pseudo-files and the calls are
 * on the control path only, never per command.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CONFIGFS_CORE = '/sys/kernel/config/target/core';

export class TcmuConfigfs {
  /** Directory of the device, e.g. /sys/kernel/config/target/core/user_1/lun0 */
  readonly dir: string;

  constructor(hbaIndex: number, deviceName: string, root = CONFIGFS_CORE) {
    this.dir = join(root, `user_${hbaIndex}`, deviceName);
  }

  read(relPath: string): string {
    return readFileSync(join(this.dir, relPath), 'utf8').trim();
  }

  write(relPath: string, value: string): void {
    writeFileSync(join(this.dir, relPath), value);
  }

  readNumber(relPath: string): number {
    const text = this.read(relPath);
    const value = Number(text);
    if (!Number.isFinite(value)) throw new Error(`${join(this.dir, relPath)}: expected a number, read "${text}"`);
    return value;
  }

  /** LUN size in bytes as the kernel announces it (attrib/dev_size). */
  devSize(): number {
    return this.readNumber('attrib/dev_size');
  }

  blockSize(): number {
    return this.readNumber('attrib/hw_block_size');
  }

  maxSectors(): number {
    return this.readNumber('attrib/hw_max_sectors');
  }

  /** LIO's unit serial (a UUID it generated or the admin set); stable across restarts. */
  unitSerial(): string | undefined {
    try {
      const text = this.read('wwn/vpd_unit_serial');
      // "T10 VPD Unit Serial Number: 5f0e..." -> the value after the colon.
      const value = text.includes(':') ? text.slice(text.indexOf(':') + 1).trim() : text;
      return value || undefined;
    } catch {
      return undefined;
    }
  }

  /** New commands wait (BUSY) while blocked; in-ring commands are unaffected. */
  setBlocked(blocked: boolean): void {
    this.write('action/block_dev', blocked ? '1' : '0');
  }

  /** Fail every command in the ring with BUSY and zero head/tail (only safe while blocked). */
  resetRing(): void {
    this.write('action/reset_ring', '1');
  }
}
