/**
 * The daemon's LUN registry for EXTENDED COPY: disks wired through it copy
 * between each other by NAA id; a LUN taken off (stopping, failed) or
 * reporting no endpoint (quiesced) is not reachable.
 */
import { describe, expect, it } from 'vitest';
import { CopyRegistry } from '../../src/daemon/copy-registry.js';
import { ScsiDisk, type DiskIdentity } from '../../src/scsi/index.js';
import { IDENTITY, command, pattern, run, sense, xcopy } from '../scsi/harness.js';
import { RamStore } from '../scsi/ram-store.js';

const naaA = '6001405' + '1'.repeat(25);
const naaB = '6001405' + '2'.repeat(25);

async function served(registry: CopyRegistry, naa: string, blocks = 2048) {
  const store = new RamStore({ blocks, async: true });
  const identity: DiskIdentity = { ...IDENTITY, naa };
  const disk = new ScsiDisk(store, identity, { copyPeers: registry.lookup });
  await run(disk, command([0, 0, 0, 0, 0, 0]));
  let serving = true;
  const unlist = registry.add(naa, () => (serving ? disk.copyEndpoint() : undefined));
  return { disk, store, unlist, pause: (v: boolean) => (serving = !v) };
}

describe('CopyRegistry', () => {
  it('EXTENDED COPY reaches another registered LUN by its NAA id', async () => {
    const registry = new CopyRegistry();
    const a = await served(registry, naaA);
    const b = await served(registry, naaB);
    pattern(4).copy(a.store.data, 0);
    const [cdb, list] = xcopy(naaA, naaB, 4);
    expect(await run(a.disk, command(cdb, { out: Buffer.from(list) }))).toBe(0);
    expect(b.store.data.subarray(0, 4 * 512).equals(pattern(4))).toBe(true);
  });

  it.each([
    ['taken off the registry (stopped, failed)', 'unlist'],
    ['registered but not serving (quiesced)', 'pause'],
  ])('a LUN %s is COPY TARGET DEVICE NOT REACHABLE', async (_n, how) => {
    const registry = new CopyRegistry();
    const a = await served(registry, naaA);
    const b = await served(registry, naaB);
    if (how === 'unlist') b.unlist();
    else b.pause(true);
    const [cdb, list] = xcopy(naaA, naaB, 1);
    const cmd = command(cdb, { out: Buffer.from(list) });
    expect(await run(a.disk, cmd)).toBe(2);
    expect(sense(cmd)).toEqual({ key: 0x0a, asc: 0x0d, ascq: 0x02 });
    expect(b.store.calls).toEqual([]);
  });

  it('a LUN that stops serving while a copy runs aborts it (COPY TARGET DEVICE NOT REACHABLE)', async () => {
    const registry = new CopyRegistry();
    const a = await served(registry, naaA, 8192);
    const b = await served(registry, naaB, 8192);
    // 4096 blocks: two 1 MiB chunks; the destination goes away after the first write.
    const origWrite = b.store.write.bind(b.store);
    let writes = 0;
    b.store.write = (offset, iov, opts) => {
      writes++;
      b.pause(true);
      return origWrite(offset, iov, opts);
    };
    const [cdb, list] = xcopy(naaA, naaB, 4096);
    const cmd = command(cdb, { out: Buffer.from(list) });
    expect(await run(a.disk, cmd)).toBe(2);
    expect(sense(cmd)).toEqual({ key: 0x0a, asc: 0x0d, ascq: 0x02 });
    expect(writes).toBe(1);
  });

  it('a stale removal does not take off a newer registration under the same id', async () => {
    const registry = new CopyRegistry();
    const first = await served(registry, naaB);
    const second = await served(registry, naaB);
    first.unlist();
    expect(registry.size).toBe(1);
    expect(registry.lookup(Buffer.from(naaB, 'hex'))).toBe(second.disk.copyEndpoint());
    second.unlist();
    expect(registry.size).toBe(0);
    expect(registry.lookup(Buffer.from(naaB, 'hex'))).toBeUndefined();
  });
});
