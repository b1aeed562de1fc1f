/**
 * qcow2's own LUKS encryption against qemu-img/qemu-io 7.2 as the oracle:
 * images made and written by QEMU are read and written by tcmu-ts and then
 * checked and re-read by QEMU (`qemu-img check`, `qemu-img compare`,
 * `qemu-io read -P`); encrypted backing chains with a key per member; a
 * wrong or missing key refused with the image byte-for-byte unchanged; and
 * the IV rule (host offset, not guest offset) established on raw sectors.
 */
import { createHash } from 'node:crypto';
import { open } from 'node:fs/promises';
import { readFileSync, writeFileSync } from 'node:fs';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import qcow2 from '../../../handlers/qcow2/index.js';
import { cryptoRegion, readCryptoHeader } from '../../../handlers/qcow2/encryption.js';
import { parseHeader } from '../../../handlers/qcow2/format.js';
import type { Backstore, OpenContext } from '../../../src/backstore/types.js';
import { KeyRing } from '../../../src/config/keyring.js';
import { unlockVolumeKey } from '../../../src/crypto/luks/unlock.js';
import { xtsEngine } from '../../../src/crypto/xts.js';
import { checkImage, createImage, imageInfo, snapshotCreate, snapshotRevert } from '../../../handlers/qcow2/api.js';
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { qemuImg, qemuImgAvailable, qemuImgOk, qemuIoOk, tempDir } from './qemu.js';

const hasQemu = qemuImgAvailable();
const tmp = tempDir('luks');
afterAll(() => tmp.cleanup());

const KiB = 1024;
const MiB = 1 << 20;
const KEYS: Record<string, Buffer> = { k1: Buffer.from('first secret\n'), k2: Buffer.from('second secret'), bad: Buffer.from('not it') };
for (const [name, bytes] of Object.entries(KEYS)) writeFileSync(tmp.path(`${name}.key`), bytes, { mode: 0o600 });

function ring(): KeyRing {
  const r = new KeyRing(tmp.path('no-key-dir'));
  for (const [name, bytes] of Object.entries(KEYS)) r.add(name, bytes);
  return r;
}

const ctx = (options: Record<string, string>, over: Partial<OpenContext> = {}): OpenContext => ({
  blockSize: 512,
  readOnly: false,
  log: pino({ level: 'silent' }).child({ lun: 'lun7' }),
  options,
  keys: ring(),
  ...over,
});

/** QEMU's view of an encrypted image: --object secret + --image-opts (the chain's secrets by node path). */
function imageOpts(path: string, key: string, backing?: { key: string }): string[] {
  const objects = ['--object', `secret,id=s0,file=${tmp.path(`${key}.key`)}`];
  let opts = `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`;
  if (backing) {
    objects.push('--object', `secret,id=s1,file=${tmp.path(`${backing.key}.key`)}`);
    opts += ',backing.encrypt.key-secret=s1';
  }
  return [...objects, '--image-opts', opts];
}

function qemuCreate(path: string, key: string, size: string, extra: string[] = []): void {
  qemuImgOk(
    'create', '-q', '-f', 'qcow2', '--object', `secret,id=s0,file=${tmp.path(`${key}.key`)}`,
    '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', ...extra, path, size,
  );
}

function qemuIo(path: string, key: string, cmds: string[], backing?: { key: string }): void {
  const [objects, opts] = [imageOpts(path, key, backing).slice(0, -2), imageOpts(path, key, backing).slice(-1)[0]!];
  qemuIoOk(...objects, '--image-opts', ...cmds.flatMap((c) => ['-c', c]), opts);
}

const pattern = (byte: number, len: number) => Buffer.alloc(len, byte);
const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

async function read(s: Backstore, offset: number, len: number): Promise<Buffer> {
  const b = Buffer.alloc(len);
  await s.read(offset, [b]);
  return b;
}

describe.skipIf(!hasQemu)('qcow2 LUKS encryption against qemu-img/qemu-io 7.2', () => {
  it('qemu-made image: tcmu-ts reads QEMU data, writes its own; qemu-img check is clean and qemu-io reads both', async () => {
    const path = tmp.path('q.qcow2');
    qemuCreate(path, 'k1', '8M');
    qemuIo(path, 'k1', ['write -P 0x11 0 64k', 'write -P 0x22 1M 4k', 'write -P 0x33 3146240 1536']);

    const s = await qcow2.open(path, ctx({ key: 'k1' }));
    expect(s.size).toBe(8 * MiB);
    expect((await read(s, 0, 64 * KiB)).equals(pattern(0x11, 64 * KiB))).toBe(true);
    expect((await read(s, MiB, 4 * KiB)).equals(pattern(0x22, 4 * KiB))).toBe(true);
    expect((await read(s, 3 * MiB, 2 * KiB)).equals(Buffer.concat([pattern(0, 512), pattern(0x33, 1536)]))).toBe(true);
    expect((await read(s, 5 * MiB, 4 * KiB)).equals(pattern(0, 4 * KiB))).toBe(true); // unallocated: zeros, not noise
    // in place (allocated by QEMU), allocating a fresh cluster partially, and a multi-cluster write
    await s.write!(4 * KiB, [pattern(0x44, 4 * KiB)], { fua: false });
    await s.write!(6 * MiB + 512, [pattern(0x55, 1024)], { fua: false });
    await s.write!(2 * MiB - 8 * KiB, [pattern(0x66, 16 * KiB), pattern(0x67, 4 * KiB)], { fua: true });
    expect((await read(s, 6 * MiB, 4 * KiB)).equals(Buffer.concat([pattern(0, 512), pattern(0x55, 1024), pattern(0, 2560)]))).toBe(true);
    await s.close();

    const check = qemuImg('check', ...imageOpts(path, 'k1'));
    expect(check.status, check.stdout + check.stderr).toBe(0);
    qemuIo(path, 'k1', [
      'read -P 0x11 0 4k', 'read -P 0x44 4k 4k', 'read -P 0x11 8k 56k', 'read -P 0x22 1M 4k',
      'read -P 0x33 3146240 1536', 'read -P 0 6M 512', 'read -P 0x55 6291968 1k', 'read -P 0 6292992 62976',
      'read -P 0x66 2040k 16k', 'read -P 0x67 2056k 4k',
    ]);
  });

  it('tcmu-ts result equals a raw image given the same writes (qemu-img compare)', async () => {
    const path = tmp.path('cmp.qcow2');
    const raw = tmp.path('cmp.raw');
    qemuCreate(path, 'k2', '4M', ['-o', 'cluster_size=4096']);
    qemuImgOk('create', '-q', '-f', 'raw', raw, '4M');
    const s = await qcow2.open(path, ctx({ key: 'k2' }));
    const fh = await open(raw, 'r+');
    let seed = 7;
    for (let i = 0; i < 64; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0;
      const off = (seed % 8000) * 512;
      const len = 512 * (1 + (seed >>> 20) % 24);
      const data = pattern(i + 1, Math.min(len, 4 * MiB - off));
      await s.write!(off, [data], { fua: false });
      await fh.write(data, 0, data.length, off);
    }
    await fh.close();
    await s.close();
    const cmp = qemuImg('compare', '--object', `secret,id=s0,file=${tmp.path('k2.key')}`, '--image-opts',
      `driver=qcow2,file.filename=${path},encrypt.key-secret=s0`, `driver=raw,file.filename=${raw}`);
    expect(cmp.status, cmp.stdout + cmp.stderr).toBe(0);
    expect(qemuImg('check', ...imageOpts(path, 'k2')).status).toBe(0);
  });

  it('IV of each 512-byte sector is its HOST offset / 512 (verified on raw sectors QEMU wrote)', async () => {
    const path = tmp.path('iv.qcow2');
    qemuCreate(path, 'k1', '4M');
    // guest cluster 40 (2.5 MiB) is allocated first, so it lands right after the metadata: host != guest
    qemuIo(path, 'k1', ['write -P 0x5a 2560k 64k']);
    // qemu-img map gives no host offsets for encrypted images: walk L1/L2 (64 KiB clusters, L1 entry 0, L2 entry 40)
    const fh = await open(path, 'r');
    try {
      const first = Buffer.alloc(64 * KiB);
      await fh.read(first, 0, first.length, 0);
      const entry = async (at: number) => {
        const b = Buffer.alloc(8);
        await fh.read(b, 0, 8, at);
        return Number(b.readBigUInt64BE() & 0x00fffffffffffe00n);
      };
      const l2 = await entry(Number(first.readBigUInt64BE(40)));
      const host = await entry(l2 + 40 * 8);
      expect(host).toBeGreaterThan(0);
      expect(host).not.toBe(2560 * KiB);
      const region = cryptoRegion(parseHeader(first, (await fh.stat()).size), (await fh.stat()).size)!;
      const header = await readCryptoHeader(fh, region, 'iv test');
      expect(header.version).toBe(1);
      expect(header.cipher).toBe('aes-xts-plain64');
      const read = async (o: number, l: number) => {
        const b = Buffer.alloc(l);
        await fh.read(b, 0, l, region.offset + o);
        return b;
      };
      const { volumeKey } = await unlockVolumeKey(header, KEYS.k1!, read, 'iv test');
      const engine = xtsEngine(volumeKey);
      const sector = Buffer.alloc(512);
      await fh.read(sector, 0, 512, host + 3 * 512);
      const byHost = Buffer.from(sector);
      engine.crypt(false, byHost, 512, host / 512 + 3, 1);
      const byGuest = Buffer.from(sector);
      engine.crypt(false, byGuest, 512, (2560 * KiB) / 512 + 3, 1);
      engine.wipe();
      volumeKey.fill(0);
      expect(byHost.equals(pattern(0x5a, 512))).toBe(true);
      expect(byGuest.equals(pattern(0x5a, 512))).toBe(false);
    } finally {
      await fh.close();
    }
  });

  it('encrypted backing chain, one key per member: reads through, writes to the top, QEMU agrees', async () => {
    const base = tmp.path('base.qcow2');
    const top = tmp.path('top.qcow2');
    qemuCreate(base, 'k1', '4M');
    qemuIo(base, 'k1', ['write -P 0xb1 0 1M', 'write -P 0xb2 2M 64k']);
    qemuImgOk(
      'create', '-q', '-f', 'qcow2', '-b', base, '-F', 'qcow2',
      '--object', `secret,id=s0,file=${tmp.path('k2.key')}`, '-o', 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=10', top,
    );
    const before = sha(base);

    const s = await qcow2.open(top, ctx({ key: 'k2', backing_key: 'k1' }));
    expect((await read(s, 512 * KiB, 4 * KiB)).equals(pattern(0xb1, 4 * KiB))).toBe(true);
    // partial write to a cluster whose old contents come (decrypted) from the base, re-encrypted for the top
    await s.write!(2 * MiB + 4 * KiB, [pattern(0xc3, 4 * KiB)], { fua: true });
    await s.close();
    expect(sha(base)).toBe(before);
    qemuIo(top, 'k2', ['read -P 0xb1 0 1M', 'read -P 0xb2 2M 4k', 'read -P 0xc3 2052k 4k', 'read -P 0xb2 2056k 56k'], { key: 'k1' });
    expect(qemuImg('check', ...imageOpts(top, 'k2', { key: 'k1' })).status).toBe(0);

    // by default the top's key is tried on the backing file too: here it does not fit
    await expect(qcow2.open(top, ctx({ key: 'k2' }))).rejects.toThrow(/base\.qcow2: LUN lun7: no keyslot matches the key/);
    await expect(qcow2.open(top, ctx({}))).rejects.toThrow(/top\.qcow2: LUN lun7: the image is encrypted \(LUKS\); option key=NAME is required/);
    expect(sha(base)).toBe(before);
  });

  it('a wrong key is refused ("no keyslot matches", naming the LUN) and the image is byte-for-byte unchanged', async () => {
    const path = tmp.path('wrong.qcow2');
    qemuCreate(path, 'k1', '4M');
    qemuIo(path, 'k1', ['write -P 0x77 0 128k']);
    const before = sha(path);
    await expect(qcow2.open(path, ctx({ key: 'bad' }))).rejects.toThrow(/^qcow2: \/.*wrong\.qcow2: LUN lun7: no keyslot matches the key$/);
    await expect(qcow2.open(path, ctx({ key: 'absent' }))).rejects.toThrow(/key "absent"/);
    // the admin's KDF budget per unlock (kdf_max_iterations): QEMU's keyslot asks for more, refused before the KDF runs
    await expect(qcow2.open(path, ctx({ key: 'k1', kdf_max_iterations: '1000' }))).rejects.toThrow(/LUN lun7: keyslot 0 needs \d+ PBKDF2 iterations, which exceeds .*of 1000 iterations/);
    await expect(qcow2.open(path, ctx({ key: 'k1', kdf_max_iterations: 'lots' }))).rejects.toThrow(/kdf_max_iterations="lots" must be a positive integer/);
    expect(sha(path)).toBe(before);
    // an unencrypted image given key= is refused too (the admin meant an encrypted one)
    const plain = tmp.path('plain.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', plain, '1M');
    await expect(qcow2.open(plain, ctx({ key: 'k1' }))).rejects.toThrow(/not encrypted/);
  });

  it('opened without keys (metadata operations) the image refuses guest data instead of returning ciphertext', async () => {
    const { openImage } = await import('../../../handlers/qcow2/api.js');
    const path = tmp.path('locked.qcow2');
    qemuCreate(path, 'k1', '1M');
    qemuIo(path, 'k1', ['write -P 0x12 0 64k']);
    const img = await openImage(path, { readOnly: true });
    expect(img.cryptoRegion).toBeDefined();
    await expect(img.read(0, [Buffer.alloc(512)])).rejects.toThrow(/encrypted and was opened without its key/);
    await img.close();
  });

  it('compressed clusters QEMU wrote into an encrypted image (plaintext deflate) read back as QEMU reads them', async () => {
    const path = tmp.path('comp.qcow2');
    qemuCreate(path, 'k1', '1M');
    qemuIo(path, 'k1', ['write -c -P 0x3c 0 64k']);
    const s = await qcow2.open(path, ctx({ key: 'k1' }));
    expect((await read(s, 0, 64 * KiB)).equals(pattern(0x3c, 64 * KiB))).toBe(true);
    // rewriting part of it allocates a normal (encrypted) cluster
    await s.write!(512, [pattern(0x3d, 512)], { fua: true });
    await s.close();
    qemuIo(path, 'k1', ['read -P 0x3c 0 512', 'read -P 0x3d 512 512', 'read -P 0x3c 1k 63k']);
  });

  it('tcmu-ts image create --encrypt luks: QEMU opens it with the key, both sides read what the other wrote, check is clean', async () => {
    const path = tmp.path('made.qcow2');
    const cli = resolve(import.meta.dirname, '../../../dist/src/cli/main.js');
    const r = spawnSync(process.execPath, [cli, 'image', 'create', path, '--format', 'qcow2', '--size', '6M', '--encrypt', 'luks', '--key-file', tmp.path('k2.key'), '--pbkdf2-iterations', '2000'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    const info = JSON.parse(qemuImgOk('info', '--output=json', path)) as { encrypted: boolean; 'format-specific': { data: { encrypt: { format: string; 'cipher-alg': string; 'cipher-mode': string; 'ivgen-alg': string } } } };
    expect(info.encrypted).toBe(true);
    expect(info['format-specific'].data.encrypt).toMatchObject({ format: 'luks', 'cipher-alg': 'aes-256', 'cipher-mode': 'xts', 'ivgen-alg': 'plain64' });
    expect(qemuImg('check', ...imageOpts(path, 'k2')).status).toBe(0);

    const s = await qcow2.open(path, ctx({ key: 'k2' }));
    await s.write!(0, [pattern(0xa1, 192 * KiB)], { fua: false });
    await s.write!(5 * MiB + 1024, [pattern(0xa2, 2048)], { fua: true });
    await s.close();
    qemuIo(path, 'k2', ['read -P 0xa1 0 192k', 'read -P 0 5M 1k', 'read -P 0xa2 5243904 2k', 'write -P 0xa3 3M 64k']);
    const again = await qcow2.open(path, ctx({ key: 'k2' }));
    expect((await read(again, 3 * MiB, 64 * KiB)).equals(pattern(0xa3, 64 * KiB))).toBe(true);
    await again.close();
    expect(qemuImg('check', ...imageOpts(path, 'k2')).status).toBe(0);
    const ours = await checkImage(path);
    expect(ours).toMatchObject({ corruptions: 0, leaks: 0 });

    // the API refuses v2 and QEMU-incompatible combinations up front
    await expect(createImage(tmp.path('v2.qcow2'), { size: MiB, version: 2, encrypt: { passphrase: Buffer.from('x') } })).rejects.toThrow(/version 3/);
  });

  it('internal snapshots of an encrypted image: COW copies are re-encrypted for their new host offset; revert; QEMU agrees', async () => {
    const path = tmp.path('snap.qcow2');
    qemuCreate(path, 'k1', '2M');
    qemuIo(path, 'k1', ['write -P 0x81 0 128k']);
    await snapshotCreate(path, 's1'); // metadata only: no key needed
    const s = await qcow2.open(path, ctx({ key: 'k1' }));
    await s.write!(4 * KiB, [pattern(0x82, 4 * KiB)], { fua: true }); // shared cluster: copied elsewhere, old part re-encrypted
    expect((await read(s, 0, 12 * KiB)).equals(Buffer.concat([pattern(0x81, 4 * KiB), pattern(0x82, 4 * KiB), pattern(0x81, 4 * KiB)]))).toBe(true);
    await s.close();
    qemuIo(path, 'k1', ['read -P 0x81 0 4k', 'read -P 0x82 4k 4k', 'read -P 0x81 8k 120k']);
    expect(qemuImg('check', ...imageOpts(path, 'k1')).status).toBe(0);
    await snapshotRevert(path, 's1');
    qemuIo(path, 'k1', ['read -P 0x81 0 128k']);
    const info = await imageInfo(path);
    expect(info.encryption).toMatchObject({ format: 'luks', cipher: 'aes-xts-plain64', keyBits: 512, keyslots: [{ id: '0', kdf: 'pbkdf2' }] });
    expect(await checkImage(path)).toMatchObject({ corruptions: 0, leaks: 0 });
  });

  it('a dirty encrypted image: the refcount rebuild at open counts the LUKS header clusters (they stay allocated)', async () => {
    const path = tmp.path('dirty.qcow2');
    qemuCreate(path, 'k1', '2M');
    qemuIo(path, 'k1', ['write -P 0x91 0 64k']);
    // set the dirty bit (incompatible feature bit 0): the next writable open rebuilds every refcount
    const fh = await open(path, 'r+');
    const bits = Buffer.alloc(8);
    await fh.read(bits, 0, 8, 72);
    bits.writeBigUInt64BE(bits.readBigUInt64BE() | 1n);
    await fh.write(bits, 0, 8, 72);
    await fh.close();
    const s = await qcow2.open(path, ctx({ key: 'k1' }));
    await s.write!(128 * KiB, [pattern(0x92, 64 * KiB)], { fua: true }); // would land on the LUKS header if its clusters were freed
    await s.close();
    expect(qemuImg('check', ...imageOpts(path, 'k1')).status).toBe(0);
    qemuIo(path, 'k1', ['read -P 0x91 0 64k', 'read -P 0x92 128k 64k']);
  });
});
