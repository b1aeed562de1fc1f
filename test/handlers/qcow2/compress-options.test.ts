/**
 * The compress= option as the handler and the CLI take it: dev_config
 * options reach the qcow2 layer, a codec other than the image's and unknown
 * options are refused with a clear message, and `lun create --compress`
 * writes the option into the qcow2 layer of the dev_config.
 */
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import qcow2 from '../../../handlers/qcow2/index.js';
import { createImage, imageInfo } from '../../../handlers/qcow2/api.js';
import type { OpenContext } from '../../../src/backstore/types.js';
import { devConfigFromCli } from '../../../src/cli/lun.js';
import { tempDir } from './qemu.js';

const tmp = tempDir('copt');
afterAll(() => tmp.cleanup());
const MiB = 1 << 20;
const ctx = (options: Record<string, string>): OpenContext => ({ blockSize: 512, readOnly: false, log: pino({ level: 'silent' }), options });

describe('qcow2 compress= option', () => {
  it('compress=zstd on a zstd image stores writes compressed; image info counts them', async () => {
    const path = tmp.path('z.qcow2');
    await createImage(path, { size: 4 * MiB, compressionType: 'zstd' });
    const store = await qcow2.open(path, ctx({ compress: 'zstd' }));
    const data = Buffer.alloc(2 * MiB, 'compressible text ');
    await store.write!(0, [data], { fua: true });
    const back = Buffer.alloc(2 * MiB);
    await store.read(0, [back]);
    expect(back.equals(data)).toBe(true);
    await store.close();
    const info = await imageInfo(path);
    expect(info.compressionType).toBe('zstd');
    expect(info.space.compressedClusters).toBe(32);
    expect(info.space.uncompressedClusters).toBe(0);
    expect(info.space.compressionRatio).toBeGreaterThan(10);
  });

  it('refuses a codec other than the image compression_type, and unknown options', async () => {
    const path = tmp.path('l.qcow2');
    await createImage(path, { size: MiB });
    await expect(qcow2.open(path, ctx({ compress: 'zstd' }))).rejects.toThrow(/compression_type zlib .*compress=zstd needs an image whose compression_type is zstd/);
    await expect(qcow2.open(path, ctx({ compress: 'gzip' }))).rejects.toThrow(/compress=gzip: expected zlib or zstd/);
    await expect(qcow2.open(path, ctx({ compres: 'zlib' }))).rejects.toThrow(/unknown option "compres"/);
    // and the image is still usable (closed, not left locked or half open)
    const s = await qcow2.open(path, ctx({ compress: 'zlib' }));
    await s.close();
  });

  it('lun create --compress puts compress= on the qcow2 layer', () => {
    expect(devConfigFromCli({ backstore: 'qcow2', path: '/srv/a.qcow2', compress: 'zstd' })).toBe('qcow2//srv/a.qcow2;compress=zstd');
    expect(devConfigFromCli({ backstore: 'qcow2', path: '/srv/a.qcow2', compress: 'zlib', encrypt: 'luks2', key: 'k1' })).toBe('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zlib');
    expect(() => devConfigFromCli({ backstore: 'file', path: '/srv/a.img', compress: 'zstd' })).toThrow(/--compress needs exactly one qcow2 layer/);
    expect(() => devConfigFromCli({ backstore: 'qcow2', path: '/srv/a.qcow2', compress: 'lz4' })).toThrow(/--compress "?lz4"?: expected zlib or zstd/);
  });
});
