import { openSync, readSync, writeSync, closeSync, writeFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { checkImage, createImage, imageInfo, openImage } from '../../../handlers/qcow2/api.js';
import { qemuCheck, qemuImgAvailable, qemuImgOk, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('format');
afterAll(() => tmp.cleanup());

function patchU64(path: string, at: number, value: bigint): void {
  const fd = openSync(path, 'r+');
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(value);
  writeSync(fd, b, 0, 8, at);
  closeSync(fd);
}

function readU64(path: string, at: number): bigint {
  const fd = openSync(path, 'r');
  const b = Buffer.alloc(8);
  readSync(fd, b, 0, 8, at);
  closeSync(fd);
  return b.readBigUInt64BE();
}

describe('qcow2 header validation', () => {
  it('refuses a file that is not qcow2', async () => {
    const p = tmp.path('raw.img');
    writeFileSync(p, Buffer.alloc(65536));
    await expect(openImage(p, { readOnly: true })).rejects.toMatchObject({ code: 'ECORRUPT', message: /bad magic/ });
  });

  it('refuses unknown incompatible feature bits, naming them', async () => {
    const p = tmp.path('unknown.qcow2');
    await createImage(p, { size: 1 << 20 });
    patchU64(p, 72, 1n << 9n);
    await expect(openImage(p, { readOnly: true })).rejects.toMatchObject({ code: 'ENOTSUP', message: /incompatible feature bit 9/ });
  });

  it('names a known-but-unsupported feature from the feature table (extended L2)', async () => {
    const p = tmp.path('ext.qcow2');
    await createImage(p, { size: 1 << 20 });
    patchU64(p, 72, 1n << 4n);
    await expect(openImage(p, { readOnly: true })).rejects.toMatchObject({ code: 'ENOTSUP', message: /extended L2/ });
  });

  it('opens a corrupt-flagged image read-only, loudly', async () => {
    const p = tmp.path('corrupt.qcow2');
    await createImage(p, { size: 1 << 20 });
    patchU64(p, 72, 1n << 1n);
    const errors: string[] = [];
    const log = { warn: () => {}, debug: () => {}, error: (_o: unknown, m: string) => errors.push(m) };
    const img = await openImage(p, { readOnly: false, log });
    expect(img.readOnly).toBe(true);
    expect(errors.join()).toMatch(/CORRUPT/);
    await img.close();
  });

  it('creates v2 and v3 images with any cluster size 512 B .. 2 MiB', async () => {
    for (const version of [2, 3] as const) {
      for (const clusterSize of [512, 4096, 65536, 2 << 20]) {
        const p = tmp.path(`c-${version}-${clusterSize}.qcow2`);
        await createImage(p, { size: 64 << 20, clusterSize, version });
        const info = await imageInfo(p);
        expect(info).toMatchObject({ version, clusterSize, virtualSize: 64 << 20, dirty: false });
        expect((await checkImage(p)).corruptions).toBe(0);
        if (hasQemu) {
          expect(qemuCheck(p).status).toBe(0);
          const q = JSON.parse(qemuImgOk('info', '--output=json', p));
          expect(q['cluster-size']).toBe(clusterSize);
          expect(q['virtual-size']).toBe(64 << 20);
        }
      }
    }
  });

  it.skipIf(!hasQemu)('refuses external data files (created by qemu-img)', async () => {
    const p = tmp.path('datafile.qcow2');
    qemuImgOk('create', '-f', 'qcow2', '-o', `data_file=${tmp.path('data.raw')}`, p, '1M');
    await expect(openImage(p, { readOnly: true })).rejects.toMatchObject({ code: 'ENOTSUP', message: /external data file/ });
  });

  it.skipIf(!hasQemu)('refuses extended L2 images created by qemu-img', async () => {
    const p = tmp.path('el2.qcow2');
    qemuImgOk('create', '-f', 'qcow2', '-o', 'extended_l2=on', p, '1M');
    await expect(openImage(p, { readOnly: true })).rejects.toMatchObject({ code: 'ENOTSUP', message: /extended L2/ });
  });

  it.skipIf(!hasQemu)('repairs a dirty (lazy refcounts) image before writing', async () => {
    const p = tmp.path('dirty.qcow2');
    qemuImgOk('create', '-f', 'qcow2', '-o', 'cluster_size=4096,lazy_refcounts=on', p, '4M');
    // Simulate a crash with lazy refcounts: data written and mapped, refcounts never updated.
    const { execFileSync } = await import('node:child_process');
    execFileSync('qemu-io', ['-f', 'qcow2', '-c', 'write -P 0x5a 0 64k', p]);
    // Zero every refcount of the data clusters: refcount block is the 3rd cluster for this layout.
    const table = Number(readU64(p, 48));
    const block = Number(readU64(p, table));
    const fd = openSync(p, 'r+');
    const zeros = Buffer.alloc(4096 - 16);
    writeSync(fd, zeros, 0, zeros.length, block + 16); // keep clusters 0..7 (metadata) counted
    closeSync(fd);
    patchU64(p, 72, 1n); // dirty bit
    expect(qemuCheck(p).status).not.toBe(0);
    const img = await openImage(p, { readOnly: false });
    const buf = Buffer.alloc(65536);
    await img.read(0, [buf]);
    expect(buf.every((b) => b === 0x5a)).toBe(true);
    await img.close();
    expect(readU64(p, 72) & 1n).toBe(0n);
    expect(qemuCheck(p).status).toBe(0);
  });
});
