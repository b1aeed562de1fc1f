// What the LUKS reader refuses, and that every refusal names the feature or
// field: real cryptsetup headers (a reencryption initialised with
// `cryptsetup reencrypt --init-only`, a LUKS1 aes-cbc-essiv container, a
// LUKS2 header with an imported token) and our own LUKS2 header with its
// JSON edited and both copies re-sealed with valid checksums.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLuks } from '../../../src/crypto/luks/format.js';
import { DEFAULT_LIMITS } from '../../../src/crypto/luks/limits.js';
import { BINARY_SIZE, sealCopy } from '../../../src/crypto/luks/luks2-binary.js';
import { readLuksHeader } from '../../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../../src/crypto/luks/unlock.js';
import { fileReader, haveTool, luksFormat, run, workDir } from './tools.js';

const KEY = Buffer.from('refusal test key');
const w = workDir();
const keyFile = w.writeKey('k', KEY);
const SIZE = 17 << 20;
let ours: Buffer;

beforeAll(async () => {
  ours = Buffer.alloc(SIZE);
  await formatLuks(
    async (o, b) => {
      b.copy(ours, o);
    },
    SIZE,
    { version: 2, passphrase: KEY, kdf: { type: 'pbkdf2', iterations: 1000 }, digestIterations: 1000 },
  );
});

const memReader = (bytes: Buffer) => async (o: number, l: number) => Buffer.from(bytes.subarray(o, o + l));

async function parse(bytes: Buffer, limits = DEFAULT_LIMITS) {
  return readLuksHeader({ read: memReader(bytes), size: bytes.length, where: 'img', limits });
}

/** Our LUKS2 image with its metadata changed by `edit` and both copies re-sealed. */
function edited(edit: (meta: any) => void): Buffer {
  const bytes = Buffer.from(ours);
  const area = bytes.subarray(BINARY_SIZE, 16384);
  const meta = JSON.parse(area.subarray(0, area.indexOf(0)).toString('utf8'));
  edit(meta);
  const json = Buffer.from(JSON.stringify(meta));
  for (const offset of [0, 16384]) {
    const copy = Buffer.alloc(16384);
    json.copy(copy, BINARY_SIZE);
    sealCopy(copy, { offset, hdrSize: 16384, seqid: 2n, label: '', uuid: 'u', salt: randomBytes(64) });
    copy.copy(bytes, offset);
  }
  return bytes;
}

describe('LUKS2 metadata refusals (JSON edited, checksums valid)', () => {
  it('accepts the unedited re-sealed header', async () => {
    const { header } = await parse(edited(() => {}));
    expect(header.keyslots).toHaveLength(1);
  });

  it.each<[string, (m: any) => void, string, RegExp]>([
    ['integrity segment', (m) => (m.segments['0'].integrity = { type: 'hmac(sha256)', journal_encryption: 'none', journal_integrity: 'none' }), 'ENOTSUP', /an integrity-protected segment \(dm-integrity \/ AEAD\) is not supported/],
    ['reencryption requirement', (m) => (m.config.requirements = { mandatory: ['online-reencrypt-v2'] }), 'ENOTSUP', /mandatory requirement "online-reencrypt-v2"/],
    ['reencrypt keyslot', (m) => (m.keyslots['1'] = { type: 'reencrypt', mode: 'encrypt' }), 'ENOTSUP', /a reencryption keyslot/],
    ['two segments', (m) => (m.segments['1'] = { ...m.segments['0'] }), 'ENOTSUP', /2 data segments/],
    ['segment flags', (m) => (m.segments['0'].flags = ['backup-final']), 'ENOTSUP', /segment flags \(reencryption in progress\)/],
    ['another cipher', (m) => (m.segments['0'].encryption = 'serpent-xts-plain64'), 'ENOTSUP', /segment 0 encryption "serpent-xts-plain64" \(only aes-xts-plain64\)/],
    ['cbc-essiv', (m) => (m.segments['0'].encryption = 'aes-cbc-essiv:sha256'), 'ENOTSUP', /"aes-cbc-essiv:sha256"/],
    ['sector size 1024', (m) => (m.segments['0'].sector_size = 1024), 'ENOTSUP', /encryption sector size 1024/],
    ['linear segment', (m) => (m.segments['0'].type = 'linear'), 'ENOTSUP', /segment type "linear"/],
    ['argon2d', (m) => (m.keyslots['0'].kdf = { type: 'argon2d', time: 4, memory: 1024, cpus: 1, salt: 'AAAAAAAAAAA=' }), 'ENOTSUP', /keyslot 0 kdf type "argon2d"/],
    ['huge argon2 memory', (m) => (m.keyslots['0'].kdf = { type: 'argon2id', time: 4, memory: 8 * 1024 * 1024, cpus: 1, salt: 'AAAAAAAAAAA=' }), 'ENOTSUP', /8388608 KiB.*limits/],
    ['unknown top-level field', (m) => (m.extra = {}), 'ECORRUPT', /unknown field "extra"/],
    ['u64 not decimal', (m) => (m.segments['0'].offset = '1e7'), 'ECORRUPT', /segment 0 offset is not a decimal number string/],
    ['offset beyond 2^53', (m) => (m.segments['0'].offset = '18446744073709551615'), 'ENOTSUP', /beyond 2\^53/],
    ['area outside the keyslots area', (m) => (m.keyslots['0'].area.offset = '16777216'), 'ECORRUPT', /keyslot 0 area .* is outside the keyslots area/],
    ['area in the header', (m) => (m.keyslots['0'].area.offset = '4096'), 'ECORRUPT', /outside the keyslots area/],
    ['data inside metadata', (m) => (m.segments['0'].offset = '32768'), 'ECORRUPT', /lies inside the metadata/],
    ['json_size mismatch', (m) => (m.config.json_size = '4096'), 'ECORRUPT', /json_size 4096 does not match/],
    ['digest for a missing keyslot', (m) => (m.digests['0'].keyslots = ['5']), 'ECORRUPT', /digest 0 names keyslot 5/],
    ['bad base64', (m) => (m.digests['0'].salt = 'not base64!'), 'ECORRUPT', /digest 0 salt is not base64/],
    ['33 keyslots', (m) => { for (let i = 1; i < 33; i++) m.keyslots[String(i)] = m.keyslots['0']; }, 'ECORRUPT', /keyslots (has more than 32 entries|id "32")/],
    ['stripes 0', (m) => (m.keyslots['0'].af.stripes = 0), 'ECORRUPT', /af stripes = 0 is outside 1..4000/],
    ['unknown activation flag', (m) => (m.config.flags = ['mystery']), 'ENOTSUP', /activation flag "mystery"/],
  ])('%s', async (_name, edit, code, message) => {
    await expect(parse(edited(edit))).rejects.toMatchObject({ code, message: expect.stringMatching(message) });
  });

  it('refuses a device without a LUKS header, and one too small for any', async () => {
    await expect(parse(Buffer.alloc(1 << 20))).rejects.toMatchObject({ code: 'EINVAL', message: 'img: not a LUKS container (no LUKS magic)' });
    await expect(parse(Buffer.alloc(512))).rejects.toMatchObject({ code: 'ECORRUPT', message: expect.stringMatching(/too small for a LUKS header/) });
  });

  it('a header copy with a higher seqid wins; a lower one is ignored with a warning', async () => {
    const bytes = edited(() => {});
    const second = edited((m) => (m.keyslots['0'].priority = 2));
    second.copy(bytes, 16384, 16384, 32768); // secondary from another edit, same seqid 2: primary wins
    let r = await parse(bytes);
    expect(r.header.keyslots[0]!.priority).toBe(1);
    // bump the secondary's seqid and re-seal it: it wins now
    const copy = Buffer.from(bytes.subarray(16384, 32768));
    sealCopy(copy, { offset: 16384, hdrSize: 16384, seqid: 3n, label: '', uuid: 'u', salt: randomBytes(64) });
    copy.copy(bytes, 16384);
    r = await parse(bytes);
    expect(r.header.keyslots[0]!.priority).toBe(2);
    expect(r.warnings.join()).toMatch(/seqid 2 and 3; using the newer/);
  });
});

describe.skipIf(!haveTool('cryptsetup'))('real cryptsetup headers tcmu-ts refuses or tolerates', () => {
  it('a reencryption initialised by cryptsetup reencrypt --init-only', async () => {
    const img = join(w.dir, 'reencrypt.img');
    run('truncate', ['-s', '40M', img]);
    run('cryptsetup', ['reencrypt', '-q', '--encrypt', '--init-only', '--reduce-device-size', '32M', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000', '--key-file', keyFile, img]);
    const f = fileReader(img);
    try {
      await expect(readLuksHeader({ read: f.read, size: f.size, where: img })).rejects.toMatchObject({
        code: 'ENOTSUP',
        message: expect.stringMatching(/mandatory requirement "online-reencrypt-v2"/),
      });
    } finally {
      f.close();
    }
  });

  it('a LUKS1 aes-cbc-essiv:sha256 container', async () => {
    const img = join(w.dir, 'cbc.img');
    luksFormat(img, keyFile, ['--type', 'luks1', '--cipher', 'aes-cbc-essiv:sha256', '--pbkdf-force-iterations', '1000']);
    const f = fileReader(img);
    try {
      await expect(readLuksHeader({ read: f.read, size: f.size, where: img })).rejects.toMatchObject({
        code: 'ENOTSUP',
        message: expect.stringMatching(/LUKS1 cipher "aes-cbc-essiv:sha256" \(only aes-xts-plain64\) is not supported/),
      });
    } finally {
      f.close();
    }
  });

  it('a LUKS2 token is reported, not used: the key file still opens; a wrong key names the token', async () => {
    const img = join(w.dir, 'token.img');
    luksFormat(img, keyFile, ['--type', 'luks2', '--pbkdf', 'pbkdf2', '--pbkdf-force-iterations', '1000']);
    const tokenFile = join(w.dir, 'token.json');
    run('sh', ['-c', `echo '{"type":"example-token","keyslots":["0"],"x":1}' > ${tokenFile}`]);
    run('cryptsetup', ['token', 'import', '--token-id', '0', '--json-file', tokenFile, img]);
    const f = fileReader(img);
    try {
      const { header } = await readLuksHeader({ read: f.read, size: f.size, where: img });
      expect(header.tokens).toEqual([{ id: '0', type: 'example-token', keyslots: ['0'] }]);
      expect((await unlockVolumeKey(header, KEY, f.read, img)).keyslot).toBe('0');
      await expect(unlockVolumeKey(header, Buffer.from('wrong'), f.read, img)).rejects.toThrow(/no keyslot matches the key \(keyslots bound to tokens 0 \("example-token"\)/);
    } finally {
      f.close();
    }
  });
});

afterAll(() => {
  run('rm', ['-rf', w.dir]);
});
