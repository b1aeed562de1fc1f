/**
 * The daemon's Server (src/daemon/serve.ts) over the simulated kernel: scan
 * of existing devices, netlink ADDED / REMOVED / RECONFIG answered per
 * device, and containment (a LUN that cannot open, or fails, leaves the
 * others serving). Netlink itself is replaced at its narrowest point: the
 * events a TcmuNetlink would decode are handed to the server's event
 * handler, and its replies are recorded instead of sent.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Server } from '../../src/daemon/serve.js';
import { silentLogger } from '../../src/log.js';
import type { TcmuEvent } from '../../src/tcmu/netlink/tcmu-events.js';
import { waitFor } from '../tcmu/wait.js';
import { registerHandler } from '../../src/backstore/registry.js';
import type { Handler } from '../../src/backstore/types.js';
import type { FaultGuard } from '../../src/daemon/fault-guard.js';
import { capacity, cdb, drainUnitAttentions, FakeNode, readBlocks, writeBlocks, type FakeDevice } from './fake-node.js';
import { createImage } from '../../handlers/qcow2/api.js';

const MiB = 1 << 20;
let node: FakeNode;
let server: Server;
let replies: Array<{ kind: string; minor: number; status: number }>;

/** The server's netlink seam: events in (private onEvent), replies out (its netlink field). */
interface EventSeam {
  onEvent(ev: TcmuEvent): void;
  netlink?: { reply(ev: TcmuEvent, status: number): Promise<void>; close(): void };
}

beforeEach(() => {
  node = new FakeNode();
  server = new Server({ log: silentLogger, subtypes: new Set(['file', 'faulty']), uioRoot: node.uioRoot, configfsRoot: node.configfsRoot });
  replies = [];
  (server as unknown as EventSeam).netlink = {
    reply: async (ev, status) => {
      replies.push({ kind: ev.kind, minor: ev.minor, status });
    },
    close() {},
  };
});
afterEach(async () => {
  await server.stop();
  node.close();
});

function fileDevice(name: string, fill = 0, size = 4 * MiB): FakeDevice {
  const path = join(node.root, `${name}.img`);
  writeFileSync(path, Buffer.alloc(size, fill));
  return node.add({ name, devConfig: `file/${path}`, size });
}

/** Deliver one event and wait for the server's reply to it. */
async function deliver(ev: TcmuEvent): Promise<number> {
  const before = replies.length;
  (server as unknown as EventSeam).onEvent(ev);
  await waitFor(() => replies.length > before, `reply to ${ev.kind} of uio${ev.minor}`);
  return replies[before]!.status;
}

describe('Server.scan', () => {
  it('serves every existing device of its subtypes; one that cannot open is skipped, the others serve', async () => {
    const good = fileDevice('good', 0x5a);
    const bad = node.add({ name: 'bad', devConfig: `file/${join(node.root, 'absent.img')}`, size: 4 * MiB });
    const foreign = node.add({ name: 'theirs', devConfig: 'rbd/pool/img', size: 4 * MiB });
    expect(await server.scan()).toBe(1);
    expect(server.list().map((l) => [l.id, l.state])).toEqual([['user_1/good', 'serving']]);
    expect(bad.opens).toBe(0);
    expect(foreign.opens).toBe(0);
    await drainUnitAttentions(good);
    expect((await readBlocks(good, 0, 1))[0]).toBe(0x5a);
    // A second scan opens nothing new; a device fixed meanwhile is picked up.
    expect(await server.scan()).toBe(0);
    writeFileSync(join(node.root, 'absent.img'), Buffer.alloc(4 * MiB));
    expect(await server.scan()).toBe(1);
    expect(server.list().map((l) => l.id).sort()).toEqual(['user_1/bad', 'user_1/good']);
    expect(server.find('bad').id).toBe('user_1/bad');
    expect(server.find('user_1/good').device.deviceName).toBe('good');
    expect(() => server.find('nothing')).toThrow(/no served LUN named nothing/);
  });
});

describe('Server online image operations', () => {
  it('status with space describes qcow2 LUNs only; image compact runs on the served image while it serves', async () => {
    await server.stop();
    server = new Server({ log: silentLogger, subtypes: new Set(['file', 'qcow2']), uioRoot: node.uioRoot, configfsRoot: node.configfsRoot });
    const path = join(node.root, 'c.qcow2');
    await createImage(path, { size: 4 * MiB, compressionType: 'zstd' });
    const q = node.add({ name: 'c', devConfig: `qcow2/${path};compress=zstd`, size: 4 * MiB });
    fileDevice('plain');
    expect(await server.scan()).toBe(2);
    await drainUnitAttentions(q);
    // Compressible data over the whole LUN, then 4 KiB rewrites: dead payloads inside shared host clusters.
    const data = Buffer.alloc(4 * MiB);
    for (let i = 0; i < data.length; i += 512) data.fill(`block ${i / 512} `, i, i + 512);
    // 128 blocks per command: the fake device's hw_max_sectors.
    for (let lba = 0; lba < 8192; lba += 128) expect((await writeBlocks(q, lba, data.subarray(lba * 512, (lba + 128) * 512))).status).toBe(0);
    for (let lba = 0; lba < 8192; lba += 256) {
      const piece = Buffer.alloc(4096, lba & 0xff);
      expect((await writeBlocks(q, lba, piece)).status).toBe(0);
      piece.copy(data, lba * 512);
    }
    const listed = await server.listWithSpace();
    const space = listed.find((l) => l.id === 'user_1/c')?.space as { logicalSize: number; compressedClusters: number; compressionRatio: number };
    expect(space).toMatchObject({ logicalSize: 4 * MiB });
    expect(space.compressedClusters).toBeGreaterThan(0);
    expect(space.compressionRatio).toBeGreaterThan(1);
    expect(listed.find((l) => l.id === 'user_1/plain')).not.toHaveProperty('space');
    const compact = await server.control('c', 'image.compact', {});
    expect((compact.value as { movedClusters: number }).movedClusters).toBeGreaterThan(0);
    for (let lba = 0; lba < 8192; lba += 128) expect((await readBlocks(q, lba, 128)).equals(data.subarray(lba * 512, (lba + 128) * 512)), `blocks ${lba}+128`).toBe(true);
    await expect(server.control('plain', 'image.compact', {})).rejects.toThrow(/no layer offers image compact/);
  });
});

describe('Server netlink events', () => {
  it('ADDED opens the device fresh and replies 0; an open failure replies its errno and serves nothing', async () => {
    const dev = fileDevice('n1');
    expect(await deliver(node.event('added', dev))).toBe(0);
    expect(dev.attr('action/reset_ring')).toBe('0'); // fresh: nothing to reset
    expect(server.list().map((l) => l.id)).toEqual(['user_1/n1']);
    const missing = node.add({ name: 'n2', devConfig: `file/${join(node.root, 'no-such.img')}`, size: 4 * MiB });
    expect(await deliver(node.event('added', missing))).toBe(-22); // EINVAL: the handler refused the config (no such file, no create=1)
    expect(server.list().map((l) => l.id)).toEqual(['user_1/n1']);
    // ADDED for a device already served is answered without reopening it.
    expect(await deliver(node.event('added', dev))).toBe(0);
    expect(dev.opens).toBe(1);
  });

  it('ADDED for a device whose sysfs entry is gone replies ENODEV', async () => {
    const dev = fileDevice('gone');
    node.remove(dev);
    expect(await deliver(node.event('added', dev))).toBe(-19);
    expect(server.list()).toEqual([]);
  });

  it('events for another runner\'s subtype get no reply from this one', async () => {
    const theirs = node.add({ name: 't', devConfig: 'rbd/pool/img', size: 4 * MiB });
    (server as unknown as EventSeam).onEvent(node.event('added', theirs));
    const mine = fileDevice('m');
    expect(await deliver(node.event('added', mine))).toBe(0);
    expect(replies.map((r) => r.minor)).toEqual([Number(mine.uio.slice(3))]);
    expect(theirs.opens).toBe(0);
  });

  it('RECONFIG dev_size resizes the LUN; the initiator sees the new capacity', async () => {
    const dev = fileDevice('rs');
    await deliver(node.event('added', dev));
    await drainUnitAttentions(dev);
    expect(await deliver(node.event('reconfig', dev, { devSize: 8 * MiB }))).toBe(0);
    expect(await drainUnitAttentions(dev)).toEqual(['2a/09']);
    expect(await capacity(dev)).toBe(8 * MiB);
  });

  it('RECONFIG dev_config: switches stores; refuses a subtype change or a bad path and keeps serving the old store', async () => {
    const dev = fileDevice('rc', 0x01);
    const next = join(node.root, 'next.img');
    writeFileSync(next, Buffer.alloc(4 * MiB, 0x02));
    await deliver(node.event('added', dev));
    await drainUnitAttentions(dev);
    expect(await deliver(node.event('reconfig', dev, { devConfig: 'ram/' }))).toBe(-22); // EINVAL: subtype change
    expect(await deliver(node.event('reconfig', dev, { devConfig: `file/${join(node.root, 'nowhere.img')}` }))).toBeLessThan(0);
    expect((await readBlocks(dev, 0, 1))[0]).toBe(0x01);
    expect(await deliver(node.event('reconfig', dev, { devConfig: ` file/${next}\n` }))).toBe(0); // trimmed as the kernel pads it
    expect(server.list()[0]!.devConfig).toBe(`file/${next}`);
    await drainUnitAttentions(dev);
    expect((await readBlocks(dev, 0, 1))[0]).toBe(0x02);
    // write_cache changes are acknowledged (WCE belongs to the initiator's MODE SELECT).
    expect(await deliver(node.event('reconfig', dev, { writeCache: true }))).toBe(0);
  });

  it('RECONFIG for a device not served replies ENODEV', async () => {
    const dev = fileDevice('ns');
    expect(await deliver(node.event('reconfig', dev, { devSize: 8 * MiB }))).toBe(-19);
  });

  it('REMOVED stops the LUN (without configfs: the device is going away) and replies 0', async () => {
    const dev = fileDevice('rm');
    await deliver(node.event('added', dev));
    dev.setAttr('action/block_dev', 'untouched');
    const lun = server.find('rm');
    expect(await deliver(node.event('removed', dev))).toBe(0);
    expect(server.list()).toEqual([]);
    expect(lun.status().state).toBe('stopped');
    expect(dev.attr('action/block_dev')).toBe('untouched');
    expect(await deliver(node.event('removed', dev))).toBe(0); // unknown device: nothing to do
  });

  it('events for one device run in order: ADDED, RECONFIG, REMOVED delivered at once', async () => {
    const dev = fileDevice('ord');
    const seam = server as unknown as EventSeam;
    seam.onEvent(node.event('added', dev));
    seam.onEvent(node.event('reconfig', dev, { devSize: 8 * MiB }));
    seam.onEvent(node.event('removed', dev));
    await waitFor(() => replies.length === 3, 'three replies');
    expect(replies.map((r) => [r.kind, r.status])).toEqual([
      ['added', 0],
      ['reconfig', 0],
      ['removed', 0],
    ]);
    expect(server.list()).toEqual([]);
  });
});

describe('Server containment and stop', () => {
  it('a fault raised from a LUN\'s handler fails that LUN alone (through the fault guard); the others keep serving', async () => {
    registerHandler(faultyHandler);
    const a = node.add({ name: 'ca', devConfig: 'faulty/', size: 4 * MiB });
    const b = fileDevice('cb', 0x0b);
    await server.scan();
    await drainUnitAttentions(b);
    // TEST UNIT READY does not reach the handler; the READ does, inside LUN ca's fault context.
    await drainUnitAttentions(a);
    faultGuard = server.faultGuard;
    void a.submit(cdb.read10(0, 1), { inLength: 512 }).catch(() => undefined);
    await waitFor(() => server.find('ca').status().state === 'failed', 'LUN ca failed');
    const byId = Object.fromEntries(server.list().map((l) => [l.id, l]));
    expect(byId['user_1/ca']).toMatchObject({ state: 'failed', error: 'unhandled promise rejection: lost write-back' });
    expect(byId['user_1/cb']!.state).toBe('serving');
    expect(server.faults()).toEqual({ attributed: 1, unattributed: 0 });
    expect(a.attr('action/block_dev')).toBe('1');
    for (let i = 0; i < 10; i++) expect((await readBlocks(b, i, 1))[0]).toBe(0x0b);
  });

  it('stop() stops every LUN, unblocks their devices and forgets them', async () => {
    const a = fileDevice('sa');
    const b = fileDevice('sb');
    await server.scan();
    const luns = [server.find('sa'), server.find('sb')];
    await server.stop();
    expect(server.list()).toEqual([]);
    expect(luns.map((l) => l.status().state)).toEqual(['stopped', 'stopped']);
    expect([a.attr('action/block_dev'), b.attr('action/block_dev')]).toEqual(['0', '0']);
  });
});

/**
 * A handler with a bug: each read leaves behind a failure nobody handles.
 * The process-level listener (not installed in the test runner) would call
 * FaultGuard.handle from the context of the code that failed; the test
 * calls it from there itself.
 */
let faultGuard: FaultGuard | undefined;
const faultyHandler: Handler = {
  name: 'faulty',
  description: 'test: every read raises a fault from its own async context',
  open(_config, ctx) {
    return {
      size: ctx.size ?? 4 * MiB,
      blockSize: ctx.blockSize,
      read(_offset, iov) {
        for (const b of iov) b.fill(0);
        setImmediate(() => faultGuard?.handle(new Error('lost write-back'), 'unhandled promise rejection'));
      },
      close() {},
    };
  },
};
