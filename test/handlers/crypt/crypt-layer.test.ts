// The crypt layer over the file handler: data compatible with qemu's LUKS1
// driver both ways, our own LUKS2 containers (512 and 4096-byte sectors)
// checked sector by sector against OpenSSL's aes-xts, WRITE SAME / UNMAP
// semantics, wrong keys, key file permissions, and no key byte in logs or
// errors.
import { createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { openStack } from '../../../src/backstore/registry.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import type { LunStore } from '../../../src/backstore/types.js';
import { KeyRing } from '../../../src/config/keyring.js';
import { formatLuks, type FormatOptions } from '../../../src/crypto/luks/format.js';
import { fileWriter, haveTool, luksFormat, run, tryRun, workDir } from './tools.js';

const w = workDir();
// Printable: qemu's secret objects insist on UTF-8.
const KEY = Buffer.from(`pass-${randomBytes(12).toString('hex')}`);
const keyFile = w.writeKey('k1', KEY);
const logLines: string[] = [];
const log = pino({ level: 'trace' }, { write: (s: string) => void logLines.push(s) }).child({ lun: 'user_1/enc' });
const ring = new KeyRing(w.keyDir);

async function openCrypt(img: string, opts: { blockSize?: number; size?: number; options?: Record<string, string>; keys?: KeyRing } = {}): Promise<LunStore> {
  const store = await openStack(
    [
      { handler: 'file', config: img },
      { handler: 'crypt', config: '', options: { key: 'k1', ...opts.options } },
    ],
    { size: opts.size, blockSize: opts.blockSize ?? 512, readOnly: false, log, keys: opts.keys ?? ring },
  );
  return toLunStore(store);
}

async function ourImage(name: string, opts: Omit<FormatOptions, 'passphrase'>, size = 20 << 20): Promise<string> {
  const img = join(w.dir, name);
  const out = fileWriter(img, size);
  try {
    await formatLuks(out.write, size, { kdf: { type: 'pbkdf2', iterations: 1000 }, digestIterations: 1000, ...opts, passphrase: KEY });
  } finally {
    out.close();
  }
  return img;
}

const sha = (p: string) => createHash('sha256').update(readFileSync(p)).digest('hex');

/** Reference aes-xts-plain64 decryption with OpenSSL's own XTS, one cipher object per sector. */
function referenceDecrypt(cipher: Buffer, key: Buffer, sectorSize: number, firstIv: number): Buffer {
  const out = Buffer.alloc(cipher.length);
  for (let s = 0; s * sectorSize < cipher.length; s++) {
    const iv = Buffer.alloc(16);
    iv.writeBigUInt64LE(BigInt(firstIv + (s * sectorSize) / 512));
    const d = createDecipheriv(key.length === 64 ? 'aes-256-xts' : 'aes-128-xts', key, iv);
    d.update(cipher.subarray(s * sectorSize, (s + 1) * sectorSize)).copy(out, s * sectorSize);
  }
  return out;
}

function pattern(len: number, seed: number): Buffer {
  const b = Buffer.alloc(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

async function readAll(lun: LunStore, offset: number, length: number): Promise<Buffer> {
  const b = Buffer.alloc(length);
  await lun.read(offset, [b]);
  return b;
}

describe.skipIf(!haveTool('qemu-io'))('LUKS1 data against qemu (cryptsetup luksFormat, qemu-io writes and reads)', () => {
  const qemuOpts = (img: string) => ['--object', `secret,id=s0,file=${keyFile}`, '--image-opts', `driver=luks,key-secret=s0,file.filename=${img}`];

  it('reads what qemu wrote and qemu reads what we wrote', async () => {
    if (!haveTool('cryptsetup')) return;
    const img = join(w.dir, 'qemu-luks1.img');
    luksFormat(img, keyFile, ['--type', 'luks1', '--iter-time', '100']);
    run('qemu-io', [...qemuOpts(img), '-c', 'write -P 0x5a 0 64k', '-c', 'write -P 0xa5 1M 12k', '-c', 'write -P 0x3c 4607k 1k']);
    const lun = await openCrypt(img);
    try {
      expect(lun.size).toBe((20 << 20) - (2 << 20));
      expect((await readAll(lun, 0, 65536)).equals(Buffer.alloc(65536, 0x5a))).toBe(true);
      expect((await readAll(lun, 1 << 20, 12288)).equals(Buffer.alloc(12288, 0xa5))).toBe(true);
      expect((await readAll(lun, 4607 * 1024, 1024)).equals(Buffer.alloc(1024, 0x3c))).toBe(true);
      // Our writes: one buffer, and several buffers whose boundaries cut sectors.
      await lun.write(2 << 20, [Buffer.alloc(8192, 0x77)], { fua: false });
      await lun.write(3 << 20, [Buffer.alloc(300, 0x66), Buffer.alloc(724, 0x66), Buffer.alloc(3072, 0x66)], { fua: true });
      await lun.flush();
    } finally {
      await lun.close();
    }
    run('qemu-io', [...qemuOpts(img), '-c', 'read -P 0x77 2M 8k', '-c', 'read -P 0x66 3M 4k', '-c', 'read -P 0x5a 0 64k']);
    // And a mismatch is a failure (the oracle really checks).
    expect(tryRun('qemu-io', [...qemuOpts(img), '-c', 'read -P 0x78 2M 8k']).stdout).toMatch(/Pattern verification failed/);
  });
});

describe('our LUKS2 containers, sector by sector against OpenSSL aes-xts', () => {
  it.each([
    [512, 64, 512],
    [4096, 64, 4096],
    [512, 32, 4096],
  ] as const)('sector %i, %i-byte key, LUN block size %i: round trip and ciphertext match', async (sectorSize, keySize, blockSize) => {
    const volumeKey = randomBytes(keySize);
    const img = await ourImage(`ours-${sectorSize}-${keySize}-${blockSize}.img`, { version: 2, sectorSize, keySize, volumeKey });
    const data = pattern(64 * 1024, sectorSize);
    let lun = await openCrypt(img, { blockSize });
    try {
      expect(lun.blockSize).toBe(blockSize);
      expect(lun.size).toBe((20 << 20) - (16 << 20));
      await lun.write(8192, [data.subarray(0, 20480), data.subarray(20480)], { fua: false });
    } finally {
      await lun.close();
    }
    const raw = readFileSync(img).subarray((16 << 20) + 8192, (16 << 20) + 8192 + data.length);
    expect(raw.equals(data)).toBe(false);
    expect(referenceDecrypt(raw, volumeKey, sectorSize, 8192 / 512).equals(data)).toBe(true);
    lun = await openCrypt(img, { blockSize });
    try {
      // Several iov buffers, cut off sector boundaries.
      const parts = [Buffer.alloc(1000), Buffer.alloc(24), Buffer.alloc(data.length - 1024)];
      await lun.read(8192, parts);
      expect(Buffer.concat(parts).equals(data)).toBe(true);
      // Back-to-back views of one buffer (as the kernel's data area hands them over): decrypted in place.
      const area = Buffer.alloc(data.length);
      await lun.read(8192, [area.subarray(0, 1000), area.subarray(1000, 1024), area.subarray(1024)]);
      expect(area.equals(data)).toBe(true);
    } finally {
      await lun.close();
    }
  });

  it('refuses a 4096-byte-sector container on a LUN of 512-byte blocks, and a LUN larger than the data area', async () => {
    const img = await ourImage('geometry.img', { version: 2, sectorSize: 4096 });
    await expect(openCrypt(img, { blockSize: 512 })).rejects.toThrow(/LUN user_1\/enc: the LUKS encryption sector size is 4096 bytes; the LUN's block size must be a multiple of it/);
    await expect(openCrypt(img, { blockSize: 4096, size: 8 << 20 })).rejects.toThrow(/LUN size 8388608 exceeds the encrypted data area \(4194304 bytes\)/);
  });
});

describe('resize', () => {
  it('a dynamic segment grows with the file below; data written past the old end reads back after reopening', async () => {
    const img = await ourImage('grow.img', { version: 2 });
    let lun = await openCrypt(img);
    try {
      expect(lun.size).toBe(4 << 20);
      await lun.resize(8 << 20);
      expect(lun.size).toBe(8 << 20);
      await lun.write(6 << 20, [Buffer.alloc(4096, 0x42)], { fua: false });
    } finally {
      await lun.close();
    }
    expect(readFileSync(img).length).toBe(24 << 20);
    lun = await openCrypt(img);
    try {
      expect(lun.size).toBe(8 << 20);
      expect((await readAll(lun, 6 << 20, 4096)).equals(Buffer.alloc(4096, 0x42))).toBe(true);
    } finally {
      await lun.close();
    }
  });
});

describe('WRITE SAME and UNMAP above the layer', () => {
  it('WRITE SAME writes encrypted zeros, UNMAP is a no-op, the LUN is not thin without allow_discards', async () => {
    const img = await ourImage('zeros.img', { version: 2 });
    const lun = await openCrypt(img);
    try {
      expect(lun.thin).toBe(false);
      await lun.write(0, [Buffer.alloc(65536, 0xee)], { fua: false });
      await lun.writeZeroes(0, 65536, { unmap: true });
      await lun.discard(65536, 4096);
      expect((await readAll(lun, 0, 65536)).equals(Buffer.alloc(65536))).toBe(true);
    } finally {
      await lun.close();
    }
    const below = readFileSync(img).subarray(16 << 20, (16 << 20) + 65536);
    expect(below.equals(Buffer.alloc(65536))).toBe(false); // no plaintext zeros below
  });

  it('allow_discards=1: thin without LBPRZ; WRITE SAME with unmap still writes encrypted zeros; UNMAP punches below', async () => {
    const img = await ourImage('discard.img', { version: 2 });
    const lun = await openCrypt(img, { options: { allow_discards: '1' } });
    try {
      expect(lun.thin).toBe(true);
      expect(lun.discardZeroes).toBe(false);
      await lun.write(0, [Buffer.alloc(1 << 20, 0xee)], { fua: false });
      await lun.writeZeroes(0, 65536, { unmap: true });
      expect((await readAll(lun, 0, 65536)).equals(Buffer.alloc(65536))).toBe(true);
      await lun.discard(512 * 1024, 512 * 1024);
      expect((await readAll(lun, 512 * 1024, 4096)).equals(Buffer.alloc(4096, 0xee))).toBe(false);
    } finally {
      await lun.close();
    }
    const file = readFileSync(img);
    expect(file.subarray(16 << 20, (16 << 20) + 65536).equals(Buffer.alloc(65536))).toBe(false);
    expect(file.subarray((16 << 20) + 512 * 1024, (16 << 20) + (1 << 20)).equals(Buffer.alloc(512 * 1024))).toBe(true);
  });
});

describe('keys', () => {
  it('a wrong key: refused naming the LUN with "no keyslot matches"; the image is byte-for-byte unchanged', async () => {
    const img = await ourImage('wrongkey.img', { version: 2 });
    const before = sha(img);
    const other = new KeyRing(w.keyDir);
    other.add('k1', Buffer.from('not the passphrase'));
    await expect(openCrypt(img, { keys: other })).rejects.toMatchObject({ code: 'EKEYREJECTED', message: expect.stringMatching(/LUN user_1\/enc: no keyslot matches the key$/) });
    expect(sha(img)).toBe(before);
  });

  it('a memory key (control socket) opens the LUN; the ring wipes it on clear', async () => {
    const img = await ourImage('memkey.img', { version: 1 });
    const mem = new KeyRing(join(w.dir, 'no-such-dir'));
    mem.add('k1', KEY);
    const lun = await openCrypt(img, { keys: mem });
    await lun.close();
    expect(mem.memoryKeyNames()).toEqual(['k1']);
    mem.clear();
    await expect(openCrypt(img, { keys: mem })).rejects.toThrow(/key "k1": key directory .* cannot be read/);
  });

  it('refuses a key file or key directory that group or others can read, and a missing key option', async () => {
    const img = await ourImage('perm.img', { version: 2 });
    chmodSync(keyFile, 0o640);
    try {
      await expect(openCrypt(img)).rejects.toThrow(/LUN user_1\/enc: key "k1": key file .*k1 is open to group or others \(mode 0640\)/);
    } finally {
      chmodSync(keyFile, 0o600);
    }
    chmodSync(w.keyDir, 0o755);
    try {
      await expect(openCrypt(img)).rejects.toThrow(/key directory .* is open to group or others \(mode 0755\)/);
    } finally {
      chmodSync(w.keyDir, 0o700);
    }
    await expect(openCrypt(img, { options: { key: '' } })).rejects.toThrow(/option key=NAME is required/);
    await expect(openCrypt(img, { options: { key: '../k1' } })).rejects.toThrow(/key name "..\/k1" is invalid/);
    await expect(openCrypt(img, { options: { colour: 'x' } })).rejects.toThrow(/unknown option "colour"/);
  });

  it('no key byte (passphrase or volume key, raw, hex or base64) appears in any log line or error', async () => {
    const volumeKey = randomBytes(64);
    const img = await ourImage('leak.img', { version: 2, volumeKey });
    const errors: string[] = [];
    const lun = await openCrypt(img);
    await lun.close();
    for (const bad of [Buffer.from('wrong'), KEY.subarray(1)]) {
      const r = new KeyRing(w.keyDir);
      r.add('k1', bad);
      await openCrypt(img, { keys: r }).catch((err: Error) => errors.push(`${err.message} ${err.stack}`));
    }
    expect(errors).toHaveLength(2);
    const text = [...logLines, ...errors].join('\n');
    expect(logLines.some((l) => /LUKS volume unlocked/.test(l))).toBe(true);
    for (const secret of [KEY, volumeKey]) {
      for (const form of [secret.toString('latin1'), secret.toString('hex'), secret.toString('base64'), secret.subarray(0, 8).toString('hex')]) {
        expect(text.includes(form)).toBe(false);
      }
    }
  });
});

afterAll(() => {
  run('rm', ['-rf', w.dir]);
});
