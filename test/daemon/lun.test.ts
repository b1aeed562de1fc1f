/**
 * One LUN (src/daemon/lun.ts) over the simulated kernel: the real handler
 * stack (file handler on temp files), SCSI emulation and ring engine, with
 * configfs as plain files (fake-node.ts). Covers what the VM tests cover
 * only end to end: open in both modes, resize, RECONFIG of the dev_config,
 * quiesce, failure and stop.
 */
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Lun } from '../../src/daemon/lun.js';
import { silentLogger } from '../../src/log.js';
import type { NativeMapping } from '../../src/native.js';
import { readUioDevice } from '../../src/tcmu/discovery.js';
import { registerHandler } from '../../src/backstore/registry.js';
import type { Backstore, Handler } from '../../src/backstore/types.js';
import { settle, waitFor } from '../tcmu/wait.js';
import { xcopy } from '../scsi/harness.js';
import { capacity, cdb, drainUnitAttentions, FakeNode, readBlocks, senseOf, writeBlocks, type FakeDevice } from './fake-node.js';

const MiB = 1 << 20;
let node: FakeNode;
let luns: Lun[];

beforeEach(() => {
  node = new FakeNode();
  luns = [];
});
afterEach(async () => {
  await Promise.allSettled(luns.map((l) => l.stop()));
  node.close();
});

/** A file-backed device of `size` bytes, its backing file filled with `fill`. */
function fileDevice(name: string, size = 4 * MiB, fill = 0): { dev: FakeDevice; path: string } {
  const path = join(node.root, `${name}.img`);
  writeFileSync(path, Buffer.alloc(size, fill));
  return { dev: node.add({ name, devConfig: `file/${path}`, size }), path };
}

function lunFor(dev: FakeDevice, drainTimeoutMs?: number): Lun {
  const device = readUioDevice(dev.uio, node.uioRoot);
  if (!device) throw new Error(`${dev.uio} not discoverable`);
  const lun = new Lun(device, { log: silentLogger, configfsRoot: node.configfsRoot, drainTimeoutMs });
  luns.push(lun);
  return lun;
}

/** The LUN's ring mapping (private to Lun). */
function mappingOf(lun: Lun): NativeMapping {
  const mapping = (lun as unknown as { mapping?: NativeMapping }).mapping;
  if (!mapping) throw new Error('the LUN has no mapping');
  return mapping;
}

/** The LUN's NAA designator (VPD 0x83, first designator), as hex. */
async function naaOf(dev: FakeDevice): Promise<string> {
  const r = await dev.submit(Buffer.from([0x12, 0x01, 0x83, 0, 255, 0]), { inLength: 255 });
  if (r.status !== 0) throw new Error(`INQUIRY VPD 0x83: status ${r.status}`);
  const d = r.dataIn!;
  if ((d[5]! & 0x0f) !== 0x3) throw new Error('first designator is not NAA');
  return d.subarray(8, 8 + d[7]!).toString('hex');
}

/** Polls `cond` every 50 ms for up to `ms` of wall-clock time (for timers that tick in seconds). */
async function waitMs(cond: () => boolean, what: string, ms: number): Promise<void> {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) if (cond()) return;
  if (!cond()) throw new Error(`gave up after ${ms} ms waiting for: ${what}`);
}

const pattern = (blocks: number, seed: number) => Buffer.from(Array.from({ length: blocks * 512 }, (_, i) => (i * 7 + seed) & 0xff));

describe('Lun open', () => {
  it('serves a device whose unit serial is a targetcli UUID (VPD 0x80 reports it, VPD 0x83 derives the NAA id from it)', async () => {
    const { dev } = fileDevice('uuid');
    const uuid = '5c2e8a1b-03d4-4f5e-9a6b-7c8d9e0f1a2b';
    dev.setAttr('wwn/vpd_unit_serial', `T10 VPD Unit Serial Number: ${uuid}\n`);
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    expect(lun.status().state).toBe('serving');
    await drainUnitAttentions(dev);
    const vpd80 = await dev.submit(Buffer.from([0x12, 0x01, 0x80, 0, 255, 0]), { inLength: 255 });
    expect(vpd80.status).toBe(0);
    expect(vpd80.dataIn!.subarray(4, 4 + vpd80.dataIn![3]!).toString('ascii')).toBe(uuid);
  });


  it('reopen (daemon restart): blocks, resets the ring, maps, unblocks; serves I/O to the file', async () => {
    const { dev } = fileDevice('a');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    expect(dev.attr('action/reset_ring')).toBe('1');
    expect(dev.attr('action/block_dev')).toBe('0');
    expect(dev.opens).toBe(1);
    const s = lun.status();
    expect(s).toMatchObject({ id: 'user_1/a', state: 'serving', size: 4 * MiB, blockSize: 512, stuckEvents: 0 });
    expect(await drainUnitAttentions(dev)).toEqual(['29/00']); // POWER ON, RESET once
    const data = pattern(8, 1);
    expect((await writeBlocks(dev, 16, data)).status).toBe(0);
    expect(await readBlocks(dev, 16, 8)).toEqual(data);
    expect(lun.status().stats!.commands).toBeGreaterThanOrEqual(3);
  });

  it('fresh (netlink ADDED): maps without touching reset_ring or block_dev', async () => {
    const { dev } = fileDevice('b');
    dev.setAttr('action/block_dev', 'untouched');
    const lun = lunFor(dev);
    await lun.start({ fresh: true });
    expect(dev.attr('action/reset_ring')).toBe('0');
    expect(dev.attr('action/block_dev')).toBe('untouched');
    expect(lun.status().state).toBe('serving');
  });

  it('a dev_config the handler refuses fails start with its reason and maps nothing', async () => {
    const dev = node.add({ name: 'c', devConfig: `file/${join(node.root, 'missing.img')}`, size: 4 * MiB });
    const lun = lunFor(dev);
    await expect(lun.start({ fresh: false })).rejects.toThrow(/missing\.img/);
    expect(dev.opens).toBe(0);
    expect(dev.attr('action/block_dev')).toBe('0');
  });
});

describe('Lun changes while serving', () => {
  it('resize: the store grows, READ CAPACITY follows, the initiator gets CAPACITY DATA HAS CHANGED', async () => {
    const { dev } = fileDevice('r');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    await lun.resize(8 * MiB);
    expect(lun.status().size).toBe(8 * MiB);
    expect(await drainUnitAttentions(dev)).toEqual(['2a/09']);
    expect(await capacity(dev)).toBe(8 * MiB);
    await lun.resize(8 * MiB); // same size: nothing to report
    expect(await drainUnitAttentions(dev)).toEqual([]);
  });

  it('resize down waits for the commands in flight (checked against the old size) before the store shrinks', async () => {
    registerHandler(recordingHandler);
    storeEvents.length = 0;
    const dev = node.add({ name: 'shrink', devConfig: 'recording/', size: 4 * MiB });
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    const tailWrite = dev.submit(cdb.write10(3 * 2048, 1), { out: Buffer.alloc(512, 7) });
    await waitFor(() => heldWrites.length === 1, 'the write near the end reached the handler');
    const shrink = lun.resize(2 * MiB);
    await settle();
    expect(storeEvents).toEqual([]); // the store has not shrunk under the write
    heldWrites.splice(0).forEach((release) => release());
    expect((await tailWrite).status).toBe(0);
    await shrink;
    expect(storeEvents).toEqual(['write done', 'resize 2097152']);
    expect(await drainUnitAttentions(dev)).toEqual(['2a/09']);
    expect(await capacity(dev)).toBe(2 * MiB); // and the LUN serves again at the new size
  });

  it("stop waits for another LUN's EXTENDED COPY writing into this LUN's store before closing it", async () => {
    registerHandler(recordingHandler);
    storeEvents.length = 0;
    const { dev: source } = fileDevice('xsrc', 4 * MiB, 0x5a);
    const destination = node.add({ name: 'xdst', devConfig: 'recording/', size: 4 * MiB });
    const [a, b] = [lunFor(source), lunFor(destination)];
    await a.start({ fresh: false });
    await b.start({ fresh: false });
    await drainUnitAttentions(source);
    const [copyCdb, list] = xcopy(await naaOf(source), await naaOf(destination), 8);
    const copy = source.submit(Buffer.from(copyCdb!), { out: Buffer.from(list!) });
    await waitFor(() => heldWrites.length === 1, "the copy's write reached the destination store");
    const stopped = b.stop();
    await settle();
    expect(storeEvents).toEqual([]); // not closed under the copy
    heldWrites.splice(0).forEach((release) => release());
    expect((await copy).status).toBe(0);
    await stopped;
    expect(storeEvents).toEqual(['write done', 'close']);
  });

  it('RECONFIG to another file: later I/O reaches the new file, the old store is closed', async () => {
    const { dev } = fileDevice('x', 4 * MiB, 0x11);
    const other = join(node.root, 'other.img');
    writeFileSync(other, Buffer.alloc(4 * MiB, 0x22));
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    expect((await readBlocks(dev, 0, 1))[0]).toBe(0x11);
    await lun.changeConfig(`file/${other}`);
    expect(lun.status()).toMatchObject({ devConfig: `file/${other}`, state: 'serving' });
    await drainUnitAttentions(dev);
    expect((await readBlocks(dev, 0, 1))[0]).toBe(0x22);
  });

  it('RECONFIG to a dev_config that cannot open is refused and the LUN keeps its store', async () => {
    const { dev } = fileDevice('y', 4 * MiB, 0x33);
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    await expect(lun.changeConfig(`file/${join(node.root, 'nope.img')}`)).rejects.toThrow(/nope\.img/);
    expect(lun.status().state).toBe('serving');
    expect((await readBlocks(dev, 0, 1))[0]).toBe(0x33);
  });

  it('quiesced: the device is blocked and the store closed while fn runs, then reopened with a unit attention', async () => {
    const { dev, path } = fileDevice('q');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    const data = pattern(4, 9);
    expect((await writeBlocks(dev, 0, data)).status).toBe(0);
    const seen = await lun.quiesced(async () => {
      // What a snapshot operation sees: the kernel holds new commands, the file is ours.
      const during = { blocked: dev.attr('action/block_dev'), state: lun.status().state };
      writeFileSync(path, Buffer.alloc(512, 0x44), { flag: 'r+' }); // the image changes under the LUN
      return during;
    });
    expect(seen).toEqual({ blocked: '1', state: 'stopping' });
    expect(dev.attr('action/block_dev')).toBe('0');
    expect(lun.status().state).toBe('serving');
    expect(await drainUnitAttentions(dev)).toEqual(['28/00']); // MEDIUM MAY HAVE CHANGED, not POWER ON: mode pages kept
    const back = await readBlocks(dev, 0, 4);
    expect(back.subarray(0, 512)).toEqual(Buffer.alloc(512, 0x44)); // read from the reopened file
    expect(back.subarray(512)).toEqual(data.subarray(512)); // written before the quiesce, flushed by close
  });

  it('quiesced with mediumChanged: false (snapshot create): reopened, no unit attention', async () => {
    const { dev } = fileDevice('qn');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    expect(await lun.quiesced(async () => 'made', { mediumChanged: false })).toBe('made');
    expect(lun.status().state).toBe('serving');
    expect(await drainUnitAttentions(dev)).toEqual([]);
  });

  it('quiesced: when fn throws, the store is still reopened and the device unblocked', async () => {
    const { dev } = fileDevice('qe');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    await expect(lun.quiesced(async () => Promise.reject(new Error('snapshot failed')))).rejects.toThrow('snapshot failed');
    expect(lun.status().state).toBe('serving');
    expect(dev.attr('action/block_dev')).toBe('0');
    await drainUnitAttentions(dev);
    expect((await readBlocks(dev, 0, 1)).length).toBe(512);
  });

  it('besideIo: an operation gets the open layer; stop aborts it and waits for it before closing the store', async () => {
    const { dev } = fileDevice('bio');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    const events: string[] = [];
    let layer: unknown;
    const op = lun.besideIo(0, async (open, signal) => {
      layer = open;
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      events.push(`aborted: ${(signal.reason as Error).message}`);
      await new Promise((resolve) => setTimeout(resolve, 20)); // finishing its chunk
      events.push('returned');
    });
    await settle();
    expect(layer, 'the file layer as its handler opened it').toMatchObject({ size: 4 * MiB });
    await lun.stop();
    events.push('stopped');
    await op;
    expect(events).toEqual(['aborted: LUN user_1/bio is closing its store', 'returned', 'stopped']);
    await expect(lun.besideIo(0, async () => 'late')).rejects.toThrow(/is not serving/);
  });

  it('refuses resize, RECONFIG and quiesce when not serving', async () => {
    const { dev } = fileDevice('ns');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await lun.stop();
    await expect(lun.resize(8 * MiB)).rejects.toThrow(/not serving/);
    await expect(lun.changeConfig(dev.spec.devConfig)).rejects.toThrow(/not serving/);
    await expect(lun.quiesced(async () => 1)).rejects.toThrow(/not serving/);
  });
});

describe('Lun failure and stop', () => {
  it('fail(): this LUN alone stops consuming its ring and is blocked; another LUN keeps serving; stop() unblocks', async () => {
    const a = fileDevice('fa').dev;
    const b = fileDevice('fb').dev;
    const la = lunFor(a);
    const lb = lunFor(b);
    await la.start({ fresh: false });
    await lb.start({ fresh: false });
    await drainUnitAttentions(a);
    await drainUnitAttentions(b);
    la.fail(new Error('handler bug'), 'uncaught exception');
    expect(la.status()).toMatchObject({ state: 'failed', error: 'uncaught exception: handler bug' });
    expect(a.attr('action/block_dev')).toBe('1');
    // A command on the failed LUN is not answered (the kernel would time it out).
    let answered = false;
    a.submit(Buffer.alloc(6)).then(
      () => (answered = true),
      () => undefined, // failed when the simulator closes
    );
    // The other LUN serves many commands meanwhile: long enough for a live ring to answer.
    for (let i = 0; i < 20; i++) expect((await readBlocks(b, i, 1)).length).toBe(512);
    expect(answered).toBe(false);
    expect(lb.status().state).toBe('serving');
    la.fail(new Error('again'), 'ring'); // a second failure does not overwrite the first reason
    expect(la.status().error).toBe('uncaught exception: handler bug');
    await la.stop();
    expect(la.status().state).toBe('stopped');
    expect(a.attr('action/block_dev')).toBe('0'); // removal or shutdown still cleans up and unblocks
  });

  it('stop(): idempotent, flushes and closes the store, unblocks the device; deviceGone skips configfs', async () => {
    const { dev, path } = fileDevice('s');
    const lun = lunFor(dev);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    const data = pattern(2, 3);
    expect((await writeBlocks(dev, 2, data)).status).toBe(0);
    const first = lun.stop();
    expect(lun.stop()).toBe(first);
    await first;
    expect(lun.status().state).toBe('stopped');
    expect(dev.attr('action/block_dev')).toBe('0');
    expect(readFileSync(path).subarray(1024, 2048)).toEqual(data);

    const gone = fileDevice('g').dev;
    const lg = lunFor(gone);
    await lg.start({ fresh: false });
    gone.setAttr('action/block_dev', 'untouched');
    await lg.stop({ deviceGone: true });
    expect(gone.attr('action/block_dev')).toBe('untouched');
    expect(lg.status().state).toBe('stopped');
  });

  it('stop() gives up on a handler that never answers after drainTimeoutMs, and still closes and unblocks', async () => {
    registerHandler(heldHandler);
    const dev = node.add({ name: 't', devConfig: 'held/', size: 4 * MiB });
    const lun = lunFor(dev, 50);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    void dev.submit(cdb.read10(0, 1), { inLength: 512 }).catch(() => undefined);
    await waitFor(() => held.length === 1, 'the read reached the handler');
    const mappingClose = vi.spyOn(mappingOf(lun), 'close');
    await lun.stop();
    expect(lun.status().state).toBe('stopped');
    expect(dev.attr('action/block_dev')).toBe('0');
    // Its store closed (the handler's close returns at once): unmapped.
    expect(mappingClose.mock.calls).toEqual([[false]]);
    // The abandoned read finishes after the ring is gone: nothing may throw.
    held.splice(0).forEach((release) => release());
    await settle();
  });

  it('the stuck-I/O watchdog runs only while commands are in flight (an idle LUN has no timer)', async () => {
    registerHandler(heldHandler);
    const dev = node.add({ name: 'w', devConfig: 'held/', size: 4 * MiB });
    const lun = lunFor(dev);
    const watchdogTimer = () => (lun as unknown as { watchdog: { timer?: NodeJS.Timeout } }).watchdog.timer;
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev); // INQUIRY/TUR complete at once; the watchdog may have armed for them
    await waitMs(() => watchdogTimer() === undefined, 'disarmed once the first commands finished', 3000);
    const read = dev.submit(cdb.read10(0, 1), { inLength: 512 });
    await waitFor(() => held.length === 1, 'the read reached the handler');
    expect(watchdogTimer()).toBeDefined();
    held.splice(0).forEach((release) => release());
    expect((await read).status).toBe(0);
    await waitMs(() => watchdogTimer() === undefined, 'disarmed one period after the LUN went idle', 3000);
    expect(lun.status()).toMatchObject({ stalledSeconds: 0, stuckEvents: 0 });
  });

  it('stop() also finishes for a serial store (maxInFlight 1) whose close queues behind a stuck call', async () => {
    registerHandler(serialHeldHandler);
    const dev = node.add({ name: 's', devConfig: 'held-serial/', size: 4 * MiB });
    const lun = lunFor(dev, 50);
    await lun.start({ fresh: false });
    await drainUnitAttentions(dev);
    void dev.submit(cdb.read10(0, 1), { inLength: 512 }).catch(() => undefined);
    await waitFor(() => held.length === 1, 'the read reached the handler');
    const mappingClose = vi.spyOn(mappingOf(lun), 'close');
    await lun.stop(); // before: waited forever for the queued close
    expect(lun.status().state).toBe('stopped');
    expect(dev.attr('action/block_dev')).toBe('0');
    // The store never closed, so its calls may still touch the data area:
    // retired (addresses kept, as anonymous memory), not unmapped.
    expect(mappingClose.mock.calls).toEqual([[true]]);
    held.splice(0).forEach((release) => release());
    await settle();
  });
});

/** Reads wait here until the test releases them. */
const held: Array<() => void> = [];
const heldHandler: Handler = {
  name: 'held',
  description: 'test: reads never finish until released',
  open(_config, ctx) {
    return {
      size: ctx.size ?? 4 * MiB,
      blockSize: ctx.blockSize,
      read: () => new Promise<void>((resolve) => held.push(resolve)),
      close() {},
    };
  },
};

/** Writes wait in heldWrites until released; completions, resizes and the close land in storeEvents, in order. */
const heldWrites: Array<() => void> = [];
const storeEvents: string[] = [];
const recordingHandler: Handler = {
  name: 'recording',
  description: 'test: held writes, recorded resizes and close',
  open(_config, ctx) {
    const store = {
      size: ctx.size ?? 4 * MiB,
      blockSize: ctx.blockSize,
      read: () => undefined,
      write: () => new Promise<void>((resolve) => heldWrites.push(resolve)).then(() => void storeEvents.push('write done')),
      resize(newSize: number) {
        storeEvents.push(`resize ${newSize}`);
        store.size = newSize;
      },
      close() {
        storeEvents.push('close');
      },
    };
    return store;
  },
};

/** As heldHandler, but declared serial: the core queues its close behind the held read. */
const serialHeldHandler: Handler = {
  name: 'held-serial',
  description: 'test: one call at a time, reads held until released',
  open(config, ctx) {
    return { ...(heldHandler.open(config, ctx) as Backstore), maxInFlight: 1 };
  },
};
