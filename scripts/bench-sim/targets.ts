/**
 * What the simulator benchmarks run commands against: a bare RAM target
 * (the engine's cost alone), and the full SCSI disk over the ram and file
 * handlers.
 */
import { Buffer } from 'node:buffer';
import { unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native } from '../../src/native.js';
import { ScsiStatus, type ScsiCommand, type ScsiTarget } from '../../src/scsi/command.js';
import { Asc, SenseKey } from '../../src/scsi/sense.js';
import { SENSE_SIZE } from '../../src/tcmu/ring-layout.js';

export const RAM_BYTES = 64 * 1024 * 1024;
/** LBAs (512-byte blocks) the benchmark's reads spread over. */
export const LBA_SPAN = RAM_BYTES / 512;

export interface BenchTarget {
  target: ScsiTarget;
  /** Release what the target opened (files), after the run. */
  close?: () => Promise<void>;
}

/**
 * READ(10)/WRITE(10) over a flat RAM buffer, minimal decode: isolates the
 * engine's cost. With `copyData` false a READ returns GOOD without filling
 * the data area: what is left is the ring engine alone, and its garbage
 * collections show whether the per-command path allocates. Copies use the
 * addon's copyBytes, as the ram handler does: Node 20's
 * Buffer.prototype.copy makes a Uint8Array view for every partial copy.
 */
const { copyBytes } = native();

export class BenchRamTarget implements ScsiTarget {
  private readonly ram = Buffer.alloc(RAM_BYTES, 0x5a);
  constructor(
    private readonly asyncCompletion: boolean,
    private readonly copyData = true,
  ) {}

  execute(cmd: ScsiCommand): number | Promise<number> {
    const status = this.run(cmd);
    return this.asyncCompletion ? Promise.resolve(status) : status;
  }

  private run(cmd: ScsiCommand): number {
    const cdb = cmd.cdb;
    const offset = cdb.readUInt32BE(2) * 512;
    let at = offset;
    const iov = cmd.iov;
    if (cdb[0] === 0x28) {
      for (let i = 0; i < iov.length && this.copyData; i++) {
        const buf = iov[i]!;
        copyBytes(buf, 0, this.ram, at, buf.length);
        at += buf.length;
      }
      cmd.dataInLength = cmd.iovLength;
      return 0;
    }
    return 2;
  }
}

/**
 * A ScsiDisk answers its first command with the power-on UNIT ATTENTION
 * (29/00), as a real disk does; Linux's scan takes it with a TEST UNIT
 * READY. Do the same here, so that 'failed' counts only real failures.
 */
function afterPowerOn(disk: ScsiTarget): ScsiTarget {
  const tur: ScsiCommand = { cdb: Buffer.alloc(6), iov: [], iovLength: 0, bidiIov: [], sense: Buffer.alloc(SENSE_SIZE), dataInLength: 0, aborted: false };
  const status = disk.execute(tur);
  if (status !== ScsiStatus.CheckCondition || (tur.sense[2]! & 0x0f) !== SenseKey.UnitAttention || tur.sense.readUInt16BE(12) !== Asc.PowerOnResetOccurred) {
    throw new Error(`bench: the first TEST UNIT READY did not report the power-on UNIT ATTENTION (status ${String(status)})`);
  }
  return disk;
}

/** `abortable`: the ram handler declaring it honours abort signals, so every command carries one. */
export async function scsiDiskTarget(abortable = false): Promise<BenchTarget> {
  // Resolved at run time: src/scsi and handlers/ram are other engineers' modules.
  const scsi = await import('../../src/scsi/index.js');
  const stack = await import('../../src/backstore/lun-store.js');
  const ramDisk = await import('../../handlers/ram/ram-disk.js');
  const ram = new ramDisk.RamDisk(RAM_BYTES, 512, false);
  const store = stack.toLunStore(abortable ? Object.assign(ram, { abortable: true }) : ram);
  // Prefill so reads copy real data rather than a zero-fill shortcut path.
  store.write(0, [Buffer.alloc(RAM_BYTES, 0x5a)], { fua: false });
  return { target: afterPowerOn(new scsi.ScsiDisk(store, scsi.deriveIdentity('bench'))) };
}

/**
 * The full read path of a `file` LUN: SCSI emulation, the file handler and
 * its io_uring/RWF_NOWAIT I/O, over a file the page cache holds (as in the
 * VM bench, whose fio region is prefilled and warm).
 */
export async function fileDiskTarget(): Promise<BenchTarget> {
  const scsi = await import('../../src/scsi/index.js');
  const stack = await import('../../src/backstore/lun-store.js');
  const file = await import('../../handlers/file/index.js');
  const { pino } = await import('pino');
  const path = join(tmpdir(), `tcmu-bench-${process.pid}-${Date.now()}.img`);
  writeFileSync(path, Buffer.alloc(RAM_BYTES, 0x5a), { mode: 0o600 });
  try {
    const opened = await file.default.open(path, {
      size: RAM_BYTES,
      blockSize: 512,
      readOnly: false,
      log: pino({ level: 'silent' }),
      options: { io: 'uring' },
    });
    const store = stack.toLunStore(opened);
    return { target: afterPowerOn(new scsi.ScsiDisk(store, scsi.deriveIdentity('bench'))), close: async () => store.close() };
  } finally {
    unlinkSync(path); // the open descriptor keeps the data until close
  }
}

