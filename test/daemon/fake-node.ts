/**
 * A TCMU node for daemon tests without a kernel: per device, the configfs
 * attributes the daemon reads and writes (plain files in a temp tree,
 * passed as configfsRoot), the /sys/class/uio entry it discovers (uioRoot),
 * and the ring: /dev/uioN opens are routed to a simulated kernel
 * (test/sim/kernel-sim.ts), so Lun and Server run their real code over a
 * real shared mapping. What the files cannot do: the kernel's refusals
 * (EINVAL on block_dev while enabling) and the effect of reset_ring; tests
 * read what the daemon wrote instead.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { native, type NativeBinding, type NativeMapping } from '../../src/native.js';
import { Mailbox } from '../../src/tcmu/ring-layout.js';
import { KernelSim, type SimResult } from '../sim/kernel-sim.js';

const RING = 64 * 1024;
const DATA = 1024 * 1024;
const MAP_SIZE = Mailbox.size + RING + DATA;

export interface FakeDeviceSpec {
  name: string;
  devConfig: string;
  size: number;
  hba?: number;
  blockSize?: number;
}

export class FakeDevice {
  /** The simulated kernel of the current mapping (a new one per open of /dev/uioN). */
  sim: KernelSim | undefined;
  opens = 0;

  constructor(
    readonly uio: string,
    readonly spec: FakeDeviceSpec,
    readonly configfsDir: string,
    readonly mapSize: number,
  ) {}

  /** A configfs attribute as the daemon left it (e.g. 'action/block_dev'). */
  attr(rel: string): string {
    return readFileSync(join(this.configfsDir, rel), 'utf8').trim();
  }

  setAttr(rel: string, value: string): void {
    writeFileSync(join(this.configfsDir, rel), value);
  }

  open(): NativeMapping {
    this.sim?.close();
    this.opens++;
    this.sim = KernelSim.create({ ringSize: RING, dataSize: DATA, ooo: true, readLen: true });
    return this.sim.runnerMapping();
  }

  submit(cdb: Buffer, data?: Parameters<KernelSim['submit']>[1]): Promise<SimResult> {
    if (!this.sim) throw new Error(`${this.uio} is not mapped by the daemon`);
    return this.sim.submit(cdb, data);
  }
}

export class FakeNode {
  readonly root = mkdtempSync(join(tmpdir(), 'tcmu-fake-node-'));
  readonly configfsRoot = join(this.root, 'configfs');
  readonly uioRoot = join(this.root, 'uio');
  readonly devices = new Map<string, FakeDevice>();
  private nextMinor = 0;
  private restore: (() => void) | undefined;

  constructor() {
    mkdirSync(this.configfsRoot, { recursive: true });
    mkdirSync(this.uioRoot, { recursive: true });
    // Route /dev/uioN opens of this node's devices to their simulators.
    const addon = native() as { openUio: NativeBinding['openUio'] };
    const real = addon.openUio;
    addon.openUio = (path, size) => {
      const dev = this.devices.get(path.replace(/^\/dev\//, ''));
      if (!dev) return real.call(addon, path, size);
      if (size !== dev.mapSize) throw new Error(`${path}: mapped with size ${size}, map0 is ${dev.mapSize}`);
      return dev.open();
    };
    this.restore = () => {
      addon.openUio = real;
    };
  }

  /** Create the device in "configfs" and "sysfs" (as `targetcli` plus the kernel would). */
  add(spec: FakeDeviceSpec): FakeDevice {
    const hba = spec.hba ?? 1;
    const uio = `uio${this.nextMinor++}`;
    const dir = join(this.configfsRoot, `user_${hba}`, spec.name);
    for (const sub of ['attrib', 'action', 'wwn']) mkdirSync(join(dir, sub), { recursive: true });
    writeFileSync(join(dir, 'attrib/dev_size'), `${spec.size}\n`);
    writeFileSync(join(dir, 'attrib/hw_block_size'), `${spec.blockSize ?? 512}\n`);
    writeFileSync(join(dir, 'attrib/hw_max_sectors'), '128\n');
    // A NAA 6 id as the serial; tests set a UUID (what rtslib/targetcli write) with setAttr.
    writeFileSync(join(dir, 'wwn/vpd_unit_serial'), `T10 VPD Unit Serial Number: 6001405${String(this.nextMinor).padStart(25, '0')}\n`);
    writeFileSync(join(dir, 'action/block_dev'), '0');
    writeFileSync(join(dir, 'action/reset_ring'), '0');
    const mapSize = MAP_SIZE;
    mkdirSync(join(this.uioRoot, uio, 'maps/map0'), { recursive: true });
    writeFileSync(join(this.uioRoot, uio, 'name'), `tcm-user/${hba}/${spec.name}/${spec.devConfig}\n`);
    writeFileSync(join(this.uioRoot, uio, 'maps/map0/size'), `0x${mapSize.toString(16).padStart(16, '0')}\n`);
    const dev = new FakeDevice(uio, spec, dir, mapSize);
    this.devices.set(uio, dev);
    return dev;
  }

  /** The kernel removed the device: its sysfs entry is gone. */
  remove(dev: FakeDevice): void {
    rmSync(join(this.uioRoot, dev.uio), { recursive: true, force: true });
  }

  /** Netlink event for a device, as decodeTcmuEvent would produce it. */
  event<K extends 'added' | 'removed' | 'reconfig'>(kind: K, dev: FakeDevice, extra: { devConfig?: string; devSize?: number; writeCache?: boolean } = {}) {
    return { kind, uioName: `tcm-user/${dev.spec.hba ?? 1}/${dev.spec.name}/${dev.spec.devConfig}`, minor: Number(dev.uio.slice(3)), deviceId: 1, ...extra };
  }

  close(): void {
    for (const dev of this.devices.values()) dev.sim?.close();
    this.restore?.();
    this.restore = undefined;
    rmSync(this.root, { recursive: true, force: true });
  }
}

// ---- SCSI helpers over the simulated initiator --------------------------------

export const cdb = {
  tur: () => Buffer.alloc(6),
  read10: (lba: number, blocks: number) => {
    const c = Buffer.alloc(10);
    c[0] = 0x28;
    c.writeUInt32BE(lba, 2);
    c.writeUInt16BE(blocks, 7);
    return c;
  },
  write10: (lba: number, blocks: number) => {
    const c = cdb.read10(lba, blocks);
    c[0] = 0x2a;
    return c;
  },
  readCapacity10: () => {
    const c = Buffer.alloc(10);
    c[0] = 0x25;
    return c;
  },
};

/** Sense key / ASC / ASCQ of a CHECK CONDITION (fixed or descriptor format). */
export function senseOf(r: SimResult): { key: number; asc: number; ascq: number } {
  const s = r.sense;
  return (s[0]! & 0x7f) >= 0x72 ? { key: s[1]! & 0xf, asc: s[2]!, ascq: s[3]! } : { key: s[2]! & 0xf, asc: s[12]!, ascq: s[13]! };
}

/** Send TEST UNIT READY until GOOD, returning the unit attentions reported on the way as "asc/ascq" strings. */
export async function drainUnitAttentions(dev: FakeDevice): Promise<string[]> {
  const seen: string[] = [];
  for (let i = 0; i < 8; i++) {
    const r = await dev.submit(cdb.tur());
    if (r.status === 0) return seen;
    const s = senseOf(r);
    if (s.key !== 6) throw new Error(`TEST UNIT READY: status ${r.status}, sense ${s.key}/${s.asc.toString(16)}/${s.ascq.toString(16)}`);
    seen.push(`${s.asc.toString(16).padStart(2, '0')}/${s.ascq.toString(16).padStart(2, '0')}`);
  }
  throw new Error('unit attentions never cleared');
}

export async function writeBlocks(dev: FakeDevice, lba: number, data: Buffer): Promise<SimResult> {
  return dev.submit(cdb.write10(lba, data.length / 512), { out: data });
}

export async function readBlocks(dev: FakeDevice, lba: number, blocks: number): Promise<Buffer> {
  const r = await dev.submit(cdb.read10(lba, blocks), { inLength: blocks * 512 });
  if (r.status !== 0) throw new Error(`READ(10) at ${lba}: status ${r.status}, sense ${JSON.stringify(senseOf(r))}`);
  return r.dataIn!;
}

/** Bytes of READ CAPACITY(10): the LUN's size. */
export async function capacity(dev: FakeDevice): Promise<number> {
  const r = await dev.submit(cdb.readCapacity10(), { inLength: 8 });
  if (r.status !== 0) throw new Error(`READ CAPACITY: status ${r.status}`);
  return (r.dataIn!.readUInt32BE(0) + 1) * r.dataIn!.readUInt32BE(4);
}
