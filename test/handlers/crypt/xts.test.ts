// aes-xts-plain64 engines (native OpenSSL loop and the JS batch over ECB)
// against OpenSSL's own aes-xts, one cipher object per sector, and the AF
// splitter against its own merge.
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { afMerge, afSplit } from '../../../src/crypto/luks/af.js';
import { xtsEngine } from '../../../src/crypto/xts.js';

/** OpenSSL's aes-xts encryption, one cipher object per sector. */
function reference(key: Buffer, data: Buffer, sectorSize: number, firstIv: number, ivStep: number): Buffer {
  const out = Buffer.alloc(data.length);
  const algo = key.length === 64 ? 'aes-256-xts' : 'aes-128-xts';
  for (let s = 0; s * sectorSize < data.length; s++) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(BigInt(firstIv + s * ivStep));
    const c = createCipheriv(algo, key, iv);
    c.update(data.subarray(s * sectorSize, (s + 1) * sectorSize)).copy(out, s * sectorSize);
  }
  return out;
}

describe.each(['native', 'js'] as const)('%s aes-xts-plain64 engine', (kind) => {
  it.each([
    [64, 512, 1, 0],
    [64, 4096, 8, 12345],
    [32, 512, 1, 2 ** 40 + 3],
    [32, 4096, 8, 2 ** 33],
  ])('%i-byte key, %i-byte sectors, IV step %i from %i: encrypts as OpenSSL and decrypts back', (keyLen, sectorSize, ivStep, firstIv) => {
    const key = randomBytes(keyLen);
    const engine = xtsEngine(key, kind);
    expect(engine.kind).toBe(kind);
    const plain = randomBytes(sectorSize * 9);
    const data = Buffer.from(plain);
    engine.crypt(true, data, sectorSize, firstIv, ivStep);
    expect(data.equals(reference(key, plain, sectorSize, firstIv, ivStep))).toBe(true);
    engine.crypt(false, data, sectorSize, firstIv, ivStep);
    expect(data.equals(plain)).toBe(true);
  });

  it.each([
    [64, 512, 1],
    [32, 512, 1],
    [64, 4096, 8],
  ])('%i-byte key, %i-byte sectors, a run over several 32 KiB passes: into a second buffer, the input left as it was', (keyLen, sectorSize, ivStep) => {
    const key = randomBytes(keyLen);
    const engine = xtsEngine(key, kind);
    const plain = randomBytes(sectorSize * 200);
    const input = Buffer.from(plain);
    const out = Buffer.alloc(plain.length);
    engine.crypt(true, input, sectorSize, 2 ** 41 + 7, ivStep, out);
    expect(input.equals(plain)).toBe(true);
    expect(out.equals(reference(key, plain, sectorSize, 2 ** 41 + 7, ivStep))).toBe(true);
    const back = Buffer.alloc(plain.length);
    engine.crypt(false, out, sectorSize, 2 ** 41 + 7, ivStep, back);
    expect(back.equals(plain)).toBe(true);
    // In place gives the same bytes.
    engine.crypt(true, input, sectorSize, 2 ** 41 + 7, ivStep);
    expect(input.equals(out)).toBe(true);
  });

  it('refuses to work after wipe', () => {
    const engine = xtsEngine(randomBytes(64), kind);
    engine.wipe();
    expect(() => engine.crypt(true, Buffer.alloc(512), 512, 0, 1)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('native aes-xts refusals', () => {
  it('a key with two equal halves, an output of another length, an output overlapping the input', () => {
    const half = randomBytes(32);
    expect(() => xtsEngine(Buffer.concat([half, half]), 'native')).toThrow(/equal halves/);
    const engine = xtsEngine(randomBytes(64), 'native');
    expect(engine.kind).toBe('native');
    const area = Buffer.alloc(4096);
    expect(() => engine.crypt(true, area.subarray(0, 1024), 512, 0, 1, Buffer.alloc(512))).toThrow(/out must be as long as data/);
    expect(() => engine.crypt(true, area.subarray(0, 1024), 512, 0, 1, area.subarray(512, 1536))).toThrow(/out overlaps data/);
    expect(area.every((b) => b === 0)).toBe(true);
  });
});

describe('AF splitter', () => {
  it.each([
    [32, 4000, 'sha256'],
    [64, 4000, 'sha1'],
    [64, 7, 'sha512'],
    [64, 1, 'sha256'],
  ] as const)('%i-byte key, %i stripes, %s: merge(split(key)) = key, and one flipped bit destroys it', async (keySize, stripes, hash) => {
    const key = randomBytes(keySize);
    const material = await afSplit(key, stripes, hash);
    expect(material.length).toBe(keySize * stripes);
    expect((await afMerge(material, keySize, stripes, hash)).equals(key)).toBe(true);
    material[0]! ^= 1;
    expect((await afMerge(material, keySize, stripes, hash)).equals(key)).toBe(false);
  });
});

describe('crypt scratch helpers', () => {
  it('contiguousView spans back-to-back buffers of one ArrayBuffer only', async () => {
    const { contiguousView } = await import('../../../handlers/crypt/scratch.js');
    const area = Buffer.alloc(8192);
    const whole = contiguousView([area.subarray(0, 4096), area.subarray(4096, 6144), area.subarray(6144)]);
    expect(whole?.byteOffset).toBe(area.byteOffset);
    expect(whole?.length).toBe(8192);
    expect(contiguousView([area.subarray(0, 4096), area.subarray(4608)])).toBeNull();
    expect(contiguousView([area.subarray(0, 512), Buffer.alloc(512)])).toBeNull();
  });
});

describe('ScratchPool', () => {
  it('reuses buffers by size class: a batch as large as the queue allocates nothing the second time', async () => {
    const { ScratchPool } = await import('../../../handlers/crypt/scratch.js');
    const pool = new ScratchPool(1 << 20);
    const first = Array.from({ length: 16 }, () => pool.take(4096));
    // One 1 MiB slab serves all 16 (one ArrayBuffer: one io_uring registration).
    expect(new Set(first.map((b) => b.buffer)).size).toBe(1);
    expect(first.every((b) => b.length === 4096)).toBe(true);
    for (const b of first) pool.give(b);
    const second = Array.from({ length: 16 }, () => pool.take(3000));
    expect(second.every((b) => first.includes(b))).toBe(true);
    for (const b of second) pool.give(b);
    // 512 KiB classes: their own buffers; what exceeds the byte bound is dropped, not kept.
    const big = [pool.take(512 * 1024), pool.take(300 * 1024), pool.take(400 * 1024)];
    expect(big.map((b) => b.length)).toEqual([524288, 524288, 524288]);
    const held = pool.heldBytes;
    for (const b of big) pool.give(b);
    expect(pool.heldBytes).toBeLessThanOrEqual(1 << 20);
    expect(pool.heldBytes).toBeGreaterThanOrEqual(held);
    // Larger than the largest class: a one-off buffer of the exact size, never kept.
    const huge = pool.take(9 * 1024 * 1024);
    expect(huge.length).toBe(9 * 1024 * 1024);
    const before = pool.heldBytes;
    pool.give(huge);
    expect(pool.heldBytes).toBe(before);
    pool.clear();
    expect(pool.heldBytes).toBe(0);
  });
});
