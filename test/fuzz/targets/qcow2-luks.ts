/**
 * Fuzz target `qcow2-luks`: qcow2 images with QEMU's own LUKS encryption
 * (crypt_method 2), mutated where the encryption is described: the
 * crypt_method field, the full disk encryption header extension (0x0537be77:
 * offset and length of the LUKS header), and the LUKS1 header inside the
 * image (cipher, key size, payload offset, digest, keyslots).
 *
 * Seeds (made once per run): one image from `qemu-img create -o
 * encrypt.format=luks` written by qemu-io, one from our createImage with
 * `encrypt`, each holding a known plaintext. Each case opens the mutated
 * image read-only with the right key (KDF limits tight enough to keep cases
 * fast), reads the plaintext range, and requires: a clean refusal, or an
 * open that reads the seed's plaintext whenever the LUKS header region and
 * the data are unchanged ('bad-plaintext' otherwise); and the file
 * byte-for-byte unchanged ('wrote-image').
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createImage } from '../../../handlers/qcow2/create.js';
import { cryptoRegion, type ImageKeys } from '../../../handlers/qcow2/encryption.js';
import { EXT_CRYPTO, parseHeader } from '../../../handlers/qcow2/format.js';
import { openImage } from '../../../handlers/qcow2/open.js';
import { writeRange } from '../../../handlers/qcow2/write-path.js';
import { spawnQemuTool } from '../../handlers/qcow2/qemu.js';
import type { LuksLimits } from '../../../src/crypto/luks/limits.js';
import { mutate } from '../lib/mutate.js';
import { FuzzFinding, isCleanRefusal, type FuzzTarget } from '../lib/target.js';

const PASSPHRASE = Buffer.from('qcow2 fuzz key');
const PLAIN_AT = 65536;
const PLAIN_LEN = 8192;
const LIMITS: LuksLimits = {
  maxArgon2MemoryKiB: 65536,
  maxArgon2Time: 16,
  maxArgon2Cpus: 4,
  maxPbkdf2Iterations: 200_000,
  maxUnlockPbkdf2Iterations: 400_000,
  maxUnlockArgon2Work: 65536 * 16,
};
const keys: ImageKeys = { where: 'fuzz', limits: LIMITS, passphrase: () => Buffer.from(PASSPHRASE) };

interface Seed {
  name: string;
  bytes: Buffer;
  hot: number[];
  /** [start, end) of the LUKS header region in the file. */
  region: [number, number];
  plaintext: Buffer;
}

let seeds: Seed[] = [];
let seedDir = '';

function plaintextFor(name: string): Buffer {
  const b = Buffer.alloc(PLAIN_LEN);
  for (let i = 0; i < PLAIN_LEN; i++) b[i] = (i * 7 + name.length * 31) & 0xff;
  return b;
}

function qemuAvailable(): boolean {
  const ok = spawnSync('qemu-img', ['--version']).status === 0 && spawnSync('qemu-io', ['--version']).status === 0;
  if (!ok && process.env.CI) throw new Error('fuzz target qcow2-luks: qemu-img/qemu-io are required in CI');
  if (!ok) console.warn('fuzz target qcow2-luks: qemu-img not found, using only images made by this project');
  return ok;
}

function run(cmd: string, ...args: string[]): void {
  const r = spawnQemuTool(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr}`);
}

async function makeSeeds(dir: string): Promise<void> {
  const keyFile = join(dir, 'key');
  writeFileSync(keyFile, PASSPHRASE, { mode: 0o600 });
  if (qemuAvailable()) {
    // qemu-img convert of a raw file holding the plaintext: QEMU encrypts every data cluster itself
    const raw = join(dir, 'plain.raw');
    const img = Buffer.alloc(1 << 20);
    plaintextFor('qemu.qcow2').copy(img, PLAIN_AT);
    writeFileSync(raw, img);
    const opts = 'encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=1,cluster_size=4096';
    run('qemu-img', 'convert', '-O', 'qcow2', '--object', `secret,id=s0,file=${keyFile}`, '-o', opts, raw, join(dir, 'qemu.qcow2'));
    rmSync(raw);
  }
  const own = join(dir, 'own.qcow2');
  await createImage(own, { size: 1 << 20, clusterSize: 4096, encrypt: { passphrase: PASSPHRASE, iterations: 1000 } });
  const img = await openImage(own, { readOnly: false, keys });
  await writeRange(img, PLAIN_AT, [plaintextFor('own.qcow2')], PLAIN_LEN);
  await img.close();
}

function describeSeed(path: string, name: string): Seed {
  const bytes = readFileSync(path);
  const header = parseHeader(bytes.subarray(0, 65536), bytes.length);
  const region = cryptoRegion(header, bytes.length)!;
  const hot = [32, 33, 34, 35]; // crypt_method
  // the extension's type, length and 16 data bytes
  for (let at = header.headerLength; at + 8 <= 4096; ) {
    const type = bytes.readUInt32BE(at);
    const len = bytes.readUInt32BE(at + 4);
    if (type === EXT_CRYPTO) for (let i = 0; i < 24; i++) hot.push(at + i);
    if (type === 0) break;
    at += 8 + Math.ceil(len / 8) * 8;
  }
  // LUKS1: version, cipher/mode/hash names, payload offset, key bytes, digest iterations, keyslot fields
  const l = region.offset;
  for (const f of [6, 7, 8, 11, 40, 47, 72, 78, 104, 107, 108, 111, 112, 164, 167]) hot.push(l + f);
  for (let i = 0; i < 8; i++) for (const f of [0, 3, 4, 7, 40, 43, 44, 47]) hot.push(l + 208 + i * 48 + f);
  return { name, bytes, hot, region: [region.offset, region.offset + region.length], plaintext: plaintextFor(name) };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function runOne(path: string, seed: Seed, bytes: Buffer): Promise<string> {
  let img;
  try {
    img = await openImage(path, { readOnly: true, keys });
  } catch (err) {
    if (isCleanRefusal(err)) return `refused:${err.code}`;
    throw err;
  }
  try {
    const got = Buffer.alloc(PLAIN_LEN);
    try {
      await img.read(PLAIN_AT, [got]);
    } catch (err) {
      if (isCleanRefusal(err)) return `read-refused:${err.code}`;
      throw err;
    }
    // Same LUKS header and same file (outside the fields the header names): then the plaintext must be the seed's.
    const [a, b] = seed.region;
    const sameLuks = bytes.subarray(a, b).equals(seed.bytes.subarray(a, b));
    const sameRest = bytes.subarray(b).equals(seed.bytes.subarray(b)) && bytes.subarray(0, 4096).equals(seed.bytes.subarray(0, 4096));
    if (sameLuks && sameRest && !got.equals(seed.plaintext)) throw new FuzzFinding('bad-plaintext', `${seed.name}: opened with the seed's key and header but read other plaintext`);
    return 'opened';
  } finally {
    await img.close();
  }
}

const target: FuzzTarget = {
  name: 'qcow2-luks',
  description: 'qcow2 LUKS encryption (crypt_method, header extension 0x0537be77, LUKS1 header inside the image) mutated: refused cleanly or read correctly, never written',
  cases: { short: 100, long: 2000 },

  async setup(workDir) {
    seedDir = join(workDir, 'qcow2-luks-seeds');
    const doneMark = join(seedDir, '.done');
    if (!existsSync(doneMark)) {
      rmSync(seedDir, { recursive: true, force: true });
      mkdirSync(seedDir, { recursive: true, mode: 0o700 });
      await makeSeeds(seedDir);
      writeFileSync(doneMark, '');
    }
    seeds = readdirSync(seedDir)
      .filter((n) => n.endsWith('.qcow2') && !n.startsWith('case-'))
      .sort()
      .map((n) => describeSeed(join(seedDir, n), n));
  },

  async runCase({ rng, index }) {
    const seed = rng.pick(seeds);
    const bytes = mutate(rng, seed.bytes, { hot: seed.hot, hotBias: 0.85, count: rng.between(1, 3) });
    const path = join(seedDir, `case-${index}.qcow2`);
    writeFileSync(path, bytes);
    try {
      const before = sha(bytes);
      const outcome = await runOne(path, seed, bytes);
      if (sha(readFileSync(path)) !== before) throw new FuzzFinding('wrote-image', `${seed.name}: a read-only open of a mutated image changed it`);
      return outcome;
    } finally {
      rmSync(path, { force: true });
    }
  },
};

export default target;
