/**
 * Fuzz target `luks`: mutated LUKS1 and LUKS2 headers, opened the way the
 * crypt layer opens them (over the file handler, with the right key).
 *
 * Seeds (made once per run in setup()): small containers from cryptsetup
 * luksFormat (LUKS2 argon2id 512, LUKS2 pbkdf2 4096, LUKS1) and from our own
 * writer, each with a known plaintext written through the layer and the
 * volume key known. Mutations:
 *  - raw bytes, biased to the binary header fields and LUKS1 keyslots;
 *  - LUKS2 JSON: a value changed, removed or added in the metadata, then
 *    both copies (or only one) re-sealed with valid checksums, so the
 *    mutation reaches the strict JSON validation and the keyslot code.
 *
 * Each case: open (KDF limits tight enough to keep cases fast) and, when it
 * opens, read back the seed's plaintext; then the file must be byte-identical
 * ('wrote-image' otherwise: opening must never write). Findings: a volume key
 * other than the seed's accepted ('wrong-key-accepted'), the seed's plaintext
 * not read back through an unchanged geometry ('bad-plaintext').
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { openCryptLayer } from '../../../handlers/crypt/index.js';
import { formatLuks } from '../../../src/crypto/luks/format.js';
import type { LuksLimits } from '../../../src/crypto/luks/limits.js';
import { BINARY_SIZE, sealCopy } from '../../../src/crypto/luks/luks2-binary.js';
import { readLuksHeader } from '../../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../../src/crypto/luks/unlock.js';
import { openStack, registerHandler } from '../../../src/backstore/registry.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import { KeyRing } from '../../../src/config/keyring.js';
import { mutate } from '../lib/mutate.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding, isCleanRefusal, type FuzzTarget } from '../lib/target.js';

const PASSPHRASE = Buffer.from('fuzz passphrase\n');
const PLAIN_LEN = 8192;
const log = pino({ level: 'silent' });

interface Seed {
  name: string;
  bytes: Buffer;
  hot: number[];
  volumeKey: string;
  dataOffset: number;
  sectorSize: number;
  plaintext: Buffer;
}

let seeds: Seed[] = [];
let seedDir = '';
let keyDir = '';
let limits: LuksLimits;

registerHandler({ name: 'crypt-fuzz', layer: true, open: (config, ctx) => openCryptLayer(config, ctx, limits) });

function tool(cmd: string, ...args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed: ${r.stderr || r.error}`);
  return r.stdout;
}

function cryptsetupAvailable(): boolean {
  const ok = spawnSync('cryptsetup', ['--version']).status === 0;
  if (!ok && process.env.CI) throw new Error('fuzz target luks: cryptsetup is required in CI (scripts/setup.sh installs cryptsetup-bin)');
  if (!ok) console.warn('fuzz target luks: cryptsetup not found, using only containers made by this project');
  return ok;
}

function cryptsetupSeeds(dir: string, keyFile: string): void {
  const fmt = (name: string, size: string, ...flags: string[]) => {
    const p = join(dir, name);
    tool('truncate', '-s', size, p);
    tool('cryptsetup', 'luksFormat', '-q', ...flags, '--key-file', keyFile, p);
  };
  const small = ['--luks2-keyslots-size', '512k', '--offset', '1152'];
  fmt('cs-luks2-argon2id-512.img', '1M', '--type', 'luks2', '--pbkdf', 'argon2id', '--pbkdf-memory', '32', '--pbkdf-force-iterations', '4', '--pbkdf-parallel', '1', '--sector-size', '512', ...small);
  fmt('cs-luks2-pbkdf2-4096.img', '1M', '--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--sector-size', '4096', ...small);
  fmt('cs-luks1.img', '1100K', '--type', 'luks1', '--pbkdf-force-iterations', '1000', '--key-size', '256', '--align-payload', '2056');
}

async function ownSeeds(dir: string): Promise<void> {
  for (const [name, version, size] of [
    ['own-luks2.img', 2, (16 << 20) + 65536],
    ['own-luks1.img', 1, (2 << 20) + 65536],
  ] as const) {
    const image = Buffer.alloc(size);
    await formatLuks(
      async (o, b) => {
        b.copy(image, o);
      },
      size,
      { version, passphrase: PASSPHRASE, kdf: version === 2 ? { type: 'argon2id', time: 1, memoryKiB: 64, cpus: 1 } : { type: 'pbkdf2', iterations: 1000 }, digestIterations: 1000 },
    );
    writeFileSync(join(dir, name), image);
  }
}

async function openLayer(path: string) {
  return toLunStore(
    await openStack(
      [
        { handler: 'file', config: path },
        { handler: 'crypt-fuzz', config: '', options: { key: 'k' } },
      ],
      { blockSize: 4096, readOnly: false, log, keys: new KeyRing(keyDir) },
    ),
  );
}

/** Write the plaintext through the layer, then record what the seed is. */
async function describeSeed(path: string, name: string): Promise<Seed> {
  const plaintext = Buffer.alloc(PLAIN_LEN);
  for (let i = 0; i < PLAIN_LEN; i++) plaintext[i] = (i * 13 + name.length) & 0xff;
  const lun = await openLayer(path);
  await lun.write(0, [plaintext], { fua: false });
  await lun.close();
  const bytes = readFileSync(path);
  const read = async (o: number, l: number) => Buffer.from(bytes.subarray(o, o + l));
  const { header } = await readLuksHeader({ read, size: bytes.length, where: name, limits });
  const { volumeKey } = await unlockVolumeKey(header, PASSPHRASE, read, name);
  return { name, bytes, hot: hotOffsets(bytes, header.version), volumeKey: volumeKey.toString('hex'), dataOffset: header.dataOffset, sectorSize: header.sectorSize, plaintext };
}

function hotOffsets(b: Buffer, version: number): number[] {
  if (version === 1) {
    const hot = [6, 7, 104, 105, 106, 107, 108, 111, 164, 167];
    for (let i = 0; i < 8; i++) for (const f of [0, 3, 4, 7, 40, 43, 44, 47]) hot.push(208 + i * 48 + f);
    return hot;
  }
  const hot: number[] = [];
  for (const base of [0, 16384]) for (const f of [0, 5, 6, 7, 8, 14, 15, 16, 23, 72, 256, 263, 448]) hot.push(base + f);
  return hot;
}

type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

const ODD_VALUES: JsonValue[] = [0, -1, 1, 4096, 2 ** 31, 2 ** 32, 2 ** 53, 1e300, 0.5, '', '0', '-1', '18446744073709551615', '9007199254740993', 'dynamic', 'aes-cbc-essiv:sha256', 'argon2d', 'sha3-256', 'reencrypt', '!!', null, true, [], {}, ['0'], ['99'], { type: 'x' }];

/** Change one value somewhere in the metadata tree (or drop/add a key). */
function mutateJson(rng: Rng, root: JsonValue): void {
  let node = root;
  for (let depth = 0; depth < 6; depth++) {
    if (node === null || typeof node !== 'object') return;
    const keys = Array.isArray(node) ? node.map((_, i) => String(i)) : Object.keys(node);
    if (keys.length === 0) return;
    const key = rng.pick(keys);
    const child = (node as Record<string, JsonValue>)[key]!;
    const stop = child === null || typeof child !== 'object' || rng.chance(0.25);
    if (stop) {
      const action = rng.below(10);
      if (action === 0 && !Array.isArray(node)) delete (node as Record<string, JsonValue>)[key];
      else if (action === 1 && !Array.isArray(node)) (node as Record<string, JsonValue>)[rng.pick(['flags', 'integrity', 'priority', 'x', '32', 'requirements'])] = rng.pick(ODD_VALUES);
      else if (action === 2 && typeof child === 'number') (node as Record<string, JsonValue>)[key] = child + rng.pick([-1, 1, 4096, -4096]);
      else if (action === 3 && typeof child === 'string' && /^\d+$/.test(child)) (node as Record<string, JsonValue>)[key] = String(BigInt(child) + BigInt(rng.pick([-512, 512, 4096, 1 << 20])));
      else (node as Record<string, JsonValue>)[key] = rng.pick(ODD_VALUES);
      return;
    }
    node = child;
  }
}

/** A LUKS2 seed with its JSON mutated and one or both copies re-sealed with valid checksums. */
function jsonMutation(rng: Rng, seed: Seed): Buffer {
  const bytes = Buffer.from(seed.bytes);
  const hdrSize = Number(bytes.readBigUInt64BE(8));
  const area = bytes.subarray(BINARY_SIZE, hdrSize);
  const text = area.subarray(0, area.indexOf(0)).toString('utf8');
  const root = JSON.parse(text) as JsonValue;
  for (let i = rng.between(1, 2); i > 0; i--) mutateJson(rng, root);
  const json = Buffer.from(JSON.stringify(root));
  if (json.length >= hdrSize - BINARY_SIZE) return bytes;
  const which = rng.pick([[0, hdrSize], [0], [hdrSize]]);
  for (const offset of which) {
    const copy = Buffer.alloc(hdrSize);
    json.copy(copy, BINARY_SIZE);
    const seqid = bytes.readBigUInt64BE(offset + 16) + (rng.chance(0.3) ? 1n : 0n);
    const label = bytes.subarray(offset + 24, offset + 72).toString('latin1').replace(/\0.*$/s, '');
    const uuid = bytes.subarray(offset + 168, offset + 208).toString('latin1').replace(/\0.*$/s, '');
    sealCopy(copy, { offset, hdrSize, seqid, label, uuid, salt: bytes.subarray(offset + 104, offset + 168) });
    copy.copy(bytes, offset);
  }
  return bytes;
}

function sha(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

function codeOf(err: unknown): string {
  if (isCleanRefusal(err)) return err.code;
  throw err;
}

async function runOne(path: string, seed: Seed): Promise<string> {
  const bytes = readFileSync(path);
  const read = async (o: number, l: number) => Buffer.from(bytes.subarray(o, o + l));
  let outcome: string;
  try {
    const { header } = await readLuksHeader({ read, size: bytes.length, where: path, limits });
    const { volumeKey } = await unlockVolumeKey(header, PASSPHRASE, read, path, limits);
    if (volumeKey.toString('hex') !== seed.volumeKey) throw new FuzzFinding('wrong-key-accepted', `${seed.name}: a mutated header yielded a volume key the seed does not have`);
    const lun = await openLayer(path);
    try {
      const got = Buffer.alloc(Math.min(PLAIN_LEN, Math.floor(lun.size / 4096) * 4096));
      if (got.length > 0) await lun.read(0, [got]);
      const sameGeometry = header.dataOffset === seed.dataOffset && header.sectorSize === seed.sectorSize && header.ivTweak === 0;
      // A raw mutation may land in the data area itself: then other plaintext is right.
      const region = (b: Buffer) => b.subarray(seed.dataOffset, seed.dataOffset + PLAIN_LEN);
      const sameCiphertext = region(bytes).equals(region(seed.bytes));
      if (sameGeometry && sameCiphertext && got.length === PLAIN_LEN && !got.equals(seed.plaintext)) {
        throw new FuzzFinding('bad-plaintext', `${seed.name}: opened with the seed's key and geometry but read other plaintext`);
      }
    } finally {
      await lun.close();
    }
    outcome = `opened-v${header.version}`;
  } catch (err) {
    if (err instanceof FuzzFinding) throw err;
    outcome = `refused:${codeOf(err)}`;
  }
  return outcome;
}

const target: FuzzTarget = {
  name: 'luks',
  description: 'mutated LUKS1/LUKS2 headers (cryptsetup-made and own, JSON re-sealed): refused cleanly or opened with the right key, never written',
  cases: { short: 150, long: 2000 },

  async setup(workDir) {
    seedDir = join(workDir, 'luks-seeds');
    keyDir = join(seedDir, 'keys');
    const doneMark = join(seedDir, '.done');
    limits = { maxArgon2MemoryKiB: 65536, maxArgon2Time: 16, maxArgon2Cpus: 4, maxPbkdf2Iterations: 20_000, maxUnlockPbkdf2Iterations: 100_000, maxUnlockArgon2Work: 4 * 65536 * 16 };
    if (!existsSync(doneMark)) {
      rmSync(seedDir, { recursive: true, force: true });
      mkdirSync(keyDir, { recursive: true, mode: 0o700 });
      chmodSync(keyDir, 0o700);
      writeFileSync(join(keyDir, 'k'), PASSPHRASE, { mode: 0o600 });
      if (cryptsetupAvailable()) cryptsetupSeeds(seedDir, join(keyDir, 'k'));
      await ownSeeds(seedDir);
      writeFileSync(doneMark, '');
    }
    const names = readdirSync(seedDir).filter((n) => n.endsWith('.img') && !n.startsWith('case-')).sort();
    seeds = [];
    for (const name of names) seeds.push(await describeSeed(join(seedDir, name), name));
  },

  async runCase({ rng, index }) {
    const seed = rng.pick(seeds);
    const luks2 = seed.bytes.readUInt16BE(6) === 2;
    const bytes = luks2 && rng.chance(0.5) ? jsonMutation(rng, seed) : mutate(rng, seed.bytes, { hot: seed.hot, hotBias: 0.75, count: rng.between(1, 3) });
    const path = join(seedDir, `case-${index}.img`);
    writeFileSync(path, bytes);
    try {
      const before = sha(bytes);
      const outcome = await runOne(path, seed);
      if (sha(readFileSync(path)) !== before) {
        // Writes through the layer are not part of a case: opening and reading must leave the image alone.
        throw new FuzzFinding('wrote-image', `${seed.name}: opening a mutated header changed the image`);
      }
      return outcome;
    } finally {
      rmSync(path, { force: true });
    }
  },
};

export default target;
