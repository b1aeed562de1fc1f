// cryptsetup -> tcmu-ts and tcmu-ts -> cryptsetup, header and key level:
// containers made by `cryptsetup luksFormat` are parsed and unlocked by our
// code, and the volume key we recover is the one `cryptsetup luksDump
// --dump-volume-key` prints (this proves KDF, AF merge, keyslot decryption
// and digest without dm-crypt); containers made by formatLuks pass
// cryptsetup's own luksDump / --test-passphrase and yield the volume key we
// put in.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLuks, type FormatOptions } from '../../../src/crypto/luks/format.js';
import { readLuksHeader } from '../../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../../src/crypto/luks/unlock.js';
import { CRYPTSETUP_FORMATS, cryptsetupVolumeKey, fileReader, fileWriter, haveTool, luksFormat, run, tryRun, workDir } from './tools.js';

const hasCryptsetup = haveTool('cryptsetup');
const w = workDir();
// A key with a trailing newline and a NUL: cryptsetup --key-file uses every byte, and so must we.
const KEY = Buffer.concat([randomBytes(40), Buffer.from([0, 0x0a])]);
const keyFile = w.writeKey('k1', KEY);

async function unlockFile(img: string, passphrase: Buffer) {
  const f = fileReader(img);
  try {
    const { header, warnings } = await readLuksHeader({ read: f.read, size: f.size, where: img });
    const unlocked = await unlockVolumeKey(header, passphrase, f.read, img);
    return { header, warnings, key: unlocked.volumeKey.toString('hex'), keyslot: unlocked.keyslot };
  } finally {
    f.close();
  }
}

describe.skipIf(!hasCryptsetup)('cryptsetup luksFormat -> our reader', () => {
  const images = new Map<string, string>();
  beforeAll(() => {
    for (const [name, flags] of Object.entries(CRYPTSETUP_FORMATS)) {
      const img = join(w.dir, `${name.replace(/\W+/g, '-')}.img`);
      luksFormat(img, keyFile, flags);
      images.set(name, img);
    }
  }, 120_000);

  it.each(Object.keys(CRYPTSETUP_FORMATS))('%s: unlocks the volume key cryptsetup reports', async (name) => {
    const img = images.get(name)!;
    const got = await unlockFile(img, KEY);
    expect(got.key).toBe(cryptsetupVolumeKey(img, keyFile));
    expect(got.warnings).toEqual([]);
    expect(got.keyslot).toBe('0');
    const dump = run('cryptsetup', ['luksDump', img]);
    expect(dump).toContain(got.header.uuid);
    const sector = /sector: (\d+)/.exec(dump)?.[1] ?? '512';
    expect(got.header.sectorSize).toBe(Number(sector));
    expect(got.header.version).toBe(name.startsWith('LUKS1') ? 1 : 2);
  });

  it('refuses a wrong key with "no keyslot matches", and a key missing its last byte too', async () => {
    const img = images.get('LUKS2 pbkdf2 4096')!;
    await expect(unlockFile(img, randomBytes(42))).rejects.toMatchObject({ code: 'EKEYREJECTED', message: expect.stringMatching(/no keyslot matches/) });
    await expect(unlockFile(img, KEY.subarray(0, KEY.length - 1))).rejects.toMatchObject({ code: 'EKEYREJECTED' });
  });

  it('opens the second keyslot cryptsetup luksAddKey made', async () => {
    const img = images.get('LUKS1')!;
    const second = Buffer.from('second passphrase, no newline');
    const secondFile = w.writeKey('k2', second);
    run('cryptsetup', ['luksAddKey', '-q', '--iter-time', '100', '--key-file', keyFile, img, secondFile]);
    const got = await unlockFile(img, second);
    expect(got.keyslot).toBe('1');
    expect(got.key).toBe(cryptsetupVolumeKey(img, keyFile));
  });

  it('uses the secondary LUKS2 header when the primary is damaged, and refuses when both are', async () => {
    const img = images.get('LUKS2 argon2id 512')!;
    const original = readFileSync(img);
    const damaged = Buffer.from(original);
    damaged[5000] ^= 0xff; // inside the primary JSON area: its checksum fails
    const p = join(w.dir, 'damaged.img');
    const out = fileWriter(p, damaged.length);
    await out.write(0, damaged);
    out.close();
    const got = await unlockFile(p, KEY);
    expect(got.key).toBe(cryptsetupVolumeKey(img, keyFile));
    expect(got.warnings.join()).toMatch(/primary LUKS2 header is damaged \(checksum mismatch\)/);
    const both = fileWriter(p, damaged.length);
    damaged[16384 + 5000] ^= 0xff;
    await both.write(0, damaged);
    both.close();
    await expect(unlockFile(p, KEY)).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/neither LUKS2 header copy is valid/) });
  });
});

describe.skipIf(!hasCryptsetup)('formatLuks -> cryptsetup', () => {
  const volumeKey = randomBytes(64);
  const cases: Array<[string, Omit<FormatOptions, 'passphrase'>, RegExp[]]> = [
    ['LUKS2 argon2id 512', { version: 2, kdf: { type: 'argon2id', time: 2, memoryKiB: 32768, cpus: 1 }, digestIterations: 1000 }, [/PBKDF:\s+argon2id/, /sector: 512 \[bytes\]/, /Threads:\s+1/]],
    ['LUKS2 argon2i 4096', { version: 2, sectorSize: 4096, kdf: { type: 'argon2i', time: 2, memoryKiB: 16384, cpus: 2 }, digestIterations: 1000 }, [/PBKDF:\s+argon2i\b/, /sector: 4096 \[bytes\]/, /Memory:\s+16384/]],
    ['LUKS2 pbkdf2 4096', { version: 2, sectorSize: 4096, kdf: { type: 'pbkdf2', iterations: 1000 }, digestIterations: 1000 }, [/PBKDF:\s+pbkdf2/, /sector: 4096 \[bytes\]/]],
    ['LUKS1', { version: 1, kdf: { type: 'pbkdf2', iterations: 1000 }, digestIterations: 1000 }, [/Version:\s+1/, /Key Slot 0: ENABLED/, /Key Slot 1: DISABLED/, /Payload offset:\s+4096/]],
  ];

  it.each(cases)('%s: luksDump, --test-passphrase and the volume key agree', async (name, opts, dumpShape) => {
    const img = join(w.dir, `ours-${name.replace(/\W+/g, '-')}.img`);
    const out = fileWriter(img, 20 << 20);
    try {
      await formatLuks(out.write, 20 << 20, { ...opts, passphrase: KEY, volumeKey });
    } finally {
      out.close();
    }
    const dump = run('cryptsetup', ['luksDump', img]);
    for (const shape of dumpShape) expect(dump).toMatch(shape);
    expect(tryRun('cryptsetup', ['open', '--test-passphrase', '--key-file', keyFile, img]).status).toBe(0);
    const wrong = w.writeKey('wrong', randomBytes(16));
    expect(tryRun('cryptsetup', ['open', '--test-passphrase', '--key-file', wrong, img]).status).not.toBe(0);
    expect(cryptsetupVolumeKey(img, keyFile)).toBe(volumeKey.toString('hex'));
    expect((await unlockFile(img, KEY)).key).toBe(volumeKey.toString('hex'));
  });
});

afterAll(() => {
  run('rm', ['-rf', w.dir]);
});
