// crypt over qcow2: `create=luks2` formats the empty virtual disk once (a
// LUKS container inside the qcow2 image that cryptsetup accepts after
// qemu-img convert), later opens use it, and a non-empty non-LUKS disk is
// never formatted over.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileOpener } from '../../../src/backstore/confine.js';
import { coerceControlArgs } from '../../../src/backstore/control.js';
import { layerOperation } from '../../../src/backstore/control-registry.js';
import { type LayerSpec, openStack } from '../../../src/backstore/registry.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import { KeyRing } from '../../../src/config/keyring.js';
import { haveTool, run, tryRun, workDir } from './tools.js';

const w = workDir();
const KEY = Buffer.from('qcow2 inner key\n');
const keyFile = w.writeKey('k1', KEY);
const log = pino({ level: 'silent' });
const files = createFileOpener([]);

async function open(img: string, cryptOptions: Record<string, string>) {
  return toLunStore(
    await openStack(
      [
        { handler: 'qcow2', config: img },
        { handler: 'crypt', config: '', options: { key: 'k1', ...cryptOptions } },
      ],
      { blockSize: 512, readOnly: false, log, keys: new KeyRing(w.keyDir) },
    ),
  );
}

describe.skipIf(!haveTool('qemu-img'))('crypt over qcow2', () => {
  it('create=luks2 formats the empty virtual disk once; data survives reopening; cryptsetup reads the container', async () => {
    const img = join(w.dir, 'inner.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
    let lun = await open(img, { create: 'luks2' });
    try {
      expect(lun.size).toBe(16 << 20);
      await lun.write(4096, [Buffer.alloc(65536, 0x5c)], { fua: false });
      await lun.flush();
    } finally {
      await lun.close();
    }
    // create= on an existing container opens it, never reformats.
    lun = await open(img, { create: 'luks2' });
    try {
      const got = Buffer.alloc(65536);
      await lun.read(4096, [got]);
      expect(got.equals(Buffer.alloc(65536, 0x5c))).toBe(true);
    } finally {
      await lun.close();
    }
    if (haveTool('cryptsetup')) {
      const raw = join(w.dir, 'inner.raw');
      run('qemu-img', ['convert', '-q', '-O', 'raw', img, raw]);
      expect(run('cryptsetup', ['luksDump', raw])).toMatch(/Version:\s+2/);
      expect(tryRun('cryptsetup', ['open', '--test-passphrase', '--key-file', keyFile, raw]).status).toBe(0);
    }
  });

  it('snapshot create / revert reach the qcow2 layer under the crypt layer; data as expected', async () => {
    const img = join(w.dir, 'snap.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
    const layers: LayerSpec[] = [
      { handler: 'qcow2', config: img, options: {} },
      { handler: 'crypt', config: '', options: { key: 'k1', create: 'luks2' } },
    ];
    const online = async (op: string, name: string) => {
      const found = await layerOperation(layers, op, 'LUN vault', files);
      expect(found.handler.name).toBe('qcow2');
      return found.operation.run({ mode: 'online', config: found.layer.config, options: {}, files, log }, coerceControlArgs(found.operation, { name }));
    };
    const block = (byte: number) => Buffer.alloc(4096, byte);
    let lun = await open(img, { create: 'luks2' });
    await lun.write(8192, [block(0xaa)], { fua: false });
    await lun.close(); // the daemon's quiesce closes the stack around the operation
    await online('snapshot.create', 'before');
    lun = await open(img, {});
    await lun.write(8192, [block(0xbb)], { fua: false });
    await lun.close();
    expect(readFileSync(img).includes(block(0xbb))).toBe(false); // only ciphertext reaches the qcow2 image
    await online('snapshot.revert', 'before');
    lun = await open(img, {});
    const back = Buffer.alloc(4096);
    await lun.read(8192, [back]);
    await lun.close();
    expect(back.equals(block(0xaa))).toBe(true);
  });

  it('refuses to format a virtual disk that holds data, and an unknown create value', async () => {
    const img = join(w.dir, 'data.qcow2');
    run('qemu-img', ['create', '-q', '-f', 'qcow2', img, '32M']);
    run('qemu-io', ['-c', 'write -P 0x11 4096 512', img]);
    const before = readFileSync(img);
    await expect(open(img, { create: 'luks2' })).rejects.toThrow(/neither a LUKS container nor empty; refusing to format over its data/);
    expect(readFileSync(img).equals(before)).toBe(true);
    await expect(open(img, { create: 'luks3' })).rejects.toThrow(/create="luks3" must be luks2 or luks1/);
  });
});

afterAll(() => {
  run('rm', ['-rf', w.dir]);
});
