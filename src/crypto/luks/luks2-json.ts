/**
 * Strict validation of the LUKS2 JSON metadata. Only what tcmu-ts can serve
 * correctly is accepted; every other feature is refused by name:
 *
 * - exactly one segment, "0", type "crypt", aes-xts-plain64, sector size 512
 *   or 4096, no integrity, no segment flags (those mark reencryption);
 * - config.requirements.mandatory must be empty (cryptsetup puts
 *   "online-reencrypt*" there while a reencryption is in progress);
 * - keyslots of type "luks2" with a raw area, AF "luks1", KDF pbkdf2 /
 *   argon2i / argon2id (a "reencrypt" keyslot is refused);
 * - digests of type "pbkdf2";
 * - tokens are checked for shape and otherwise only reported (they are ways
 *   for other tools to find a passphrase; a key file never needs them).
 *
 * Numbers that LUKS2 stores as strings (offsets, sizes) must be decimal and
 * below 2^53; every area must lie after both header copies, inside the
 * keyslots area, before the data, and inside the device.
 */
import { corrupt, unsupported } from './errors.js';
import { MAX_STRIPES, SECTOR, type LuksLimits } from './limits.js';
import { HASH_SIZES, isHashName, type HashName, type Kdf, type Keyslot, type LuksHeader, type LuksToken, type VolumeDigest } from './model.js';

type Json = Record<string, unknown>;
type Ctx = { where: string; limits: LuksLimits };

/** LUKS2 allows at most 32 keyslots and 32 tokens; ids are their decimal index. */
const MAX_IDS = 32;
const ID_RE = /^(?:0|[1-9]\d?)$/;
const KNOWN_FLAGS = new Set(['allow-discards', 'same-cpu-crypt', 'submit-from-crypt-cpus', 'no-journal', 'no-read-workqueue', 'no-write-workqueue']);

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function obj(v: unknown, ctx: Ctx, what: string): Json {
  if (!isObject(v)) throw corrupt(ctx.where, `${what} is not a JSON object`);
  return v;
}

function onlyKeys(o: Json, allowed: readonly string[], ctx: Ctx, what: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw corrupt(ctx.where, `${what} has an unknown field ${JSON.stringify(k.slice(0, 40))}`);
}

function str(v: unknown, ctx: Ctx, what: string): string {
  if (typeof v !== 'string' || v.length > 256) throw corrupt(ctx.where, `${what} is not a string`);
  return v;
}

/** A LUKS2 u64 stored as a decimal string, limited to what a JS number holds exactly. */
function u64(v: unknown, ctx: Ctx, what: string): number {
  if (typeof v !== 'string' || !/^(?:0|[1-9]\d{0,19})$/.test(v)) throw corrupt(ctx.where, `${what} is not a decimal number string`);
  const n = Number(v);
  if (!Number.isSafeInteger(n)) throw unsupported(ctx.where, `${what} = ${v} (beyond 2^53)`);
  return n;
}

function int(v: unknown, ctx: Ctx, what: string, min: number, max: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v)) throw corrupt(ctx.where, `${what} is not an integer`);
  if (v < min || v > max) throw corrupt(ctx.where, `${what} = ${v} is outside ${min}..${max}`);
  return v;
}

function b64(v: unknown, ctx: Ctx, what: string, minLen: number, maxLen: number): Buffer {
  if (typeof v !== 'string' || v.length > 4 * maxLen || v.length % 4 !== 0 || !/^[A-Za-z0-9+/]*={0,2}$/.test(v)) {
    throw corrupt(ctx.where, `${what} is not base64`);
  }
  const buf = Buffer.from(v, 'base64');
  if (buf.length < minLen || buf.length > maxLen) throw corrupt(ctx.where, `${what} is ${buf.length} bytes (${minLen}..${maxLen})`);
  return buf;
}

function hash(v: unknown, ctx: Ctx, what: string): HashName {
  const h = str(v, ctx, what);
  if (!isHashName(h)) throw unsupported(ctx.where, `${what} ${JSON.stringify(h)} (sha1, sha256, sha512 are)`);
  return h;
}

function ids(v: unknown, ctx: Ctx, what: string): string[] {
  if (!Array.isArray(v) || v.length > MAX_IDS) throw corrupt(ctx.where, `${what} is not a list of at most ${MAX_IDS} ids`);
  return v.map((id, i) => {
    if (typeof id !== 'string' || !ID_RE.test(id) || Number(id) >= MAX_IDS) throw corrupt(ctx.where, `${what}[${i}] is not an id 0..31`);
    return id;
  });
}

function entries(v: unknown, ctx: Ctx, what: string): Array<[string, Json]> {
  const o = obj(v, ctx, what);
  const list = Object.entries(o);
  if (list.length > MAX_IDS) throw corrupt(ctx.where, `${what} has more than ${MAX_IDS} entries`);
  return list.map(([id, value]) => {
    if (!ID_RE.test(id) || Number(id) >= MAX_IDS) throw corrupt(ctx.where, `${what} id ${JSON.stringify(id.slice(0, 40))} is not 0..31`);
    return [id, obj(value, ctx, `${what} ${id}`)];
  });
}

function xtsEncryption(v: unknown, ctx: Ctx, what: string): void {
  const enc = str(v, ctx, what);
  if (enc !== 'aes-xts-plain64') throw unsupported(ctx.where, `${what} ${JSON.stringify(enc)} (only aes-xts-plain64)`);
}

function parseKdf(v: unknown, ctx: Ctx, what: string): Kdf {
  const k = obj(v, ctx, what);
  const type = str(k.type, ctx, `${what} type`);
  const { limits } = ctx;
  if (type === 'pbkdf2') {
    onlyKeys(k, ['type', 'hash', 'iterations', 'salt'], ctx, what);
    const iterations = int(k.iterations, ctx, `${what} iterations`, 1, 0xffffffff);
    if (iterations > limits.maxPbkdf2Iterations) throw unsupported(ctx.where, `${what} with ${iterations} PBKDF2 iterations (limit ${limits.maxPbkdf2Iterations})`);
    return { type, hash: hash(k.hash, ctx, `${what} hash`), iterations, salt: b64(k.salt, ctx, `${what} salt`, 1, 256) };
  }
  if (type === 'argon2i' || type === 'argon2id') {
    onlyKeys(k, ['type', 'time', 'memory', 'cpus', 'salt'], ctx, what);
    const time = int(k.time, ctx, `${what} time`, 1, 0xffffffff);
    const memoryKiB = int(k.memory, ctx, `${what} memory`, 8, 0xffffffff);
    const cpus = int(k.cpus, ctx, `${what} cpus`, 1, 0xffffff);
    if (time > limits.maxArgon2Time || memoryKiB > limits.maxArgon2MemoryKiB || cpus > limits.maxArgon2Cpus) {
      throw unsupported(
        ctx.where,
        `${what} asking for time ${time}, ${memoryKiB} KiB, ${cpus} threads (limits ${limits.maxArgon2Time}, ${limits.maxArgon2MemoryKiB} KiB, ${limits.maxArgon2Cpus})`,
      );
    }
    if (memoryKiB < 8 * cpus) throw corrupt(ctx.where, `${what} memory ${memoryKiB} KiB is below 8 KiB per thread`);
    return { type, time, memoryKiB, cpus, salt: b64(k.salt, ctx, `${what} salt`, 8, 256) };
  }
  throw unsupported(ctx.where, `${what} type ${JSON.stringify(type)}`);
}

function parseKeyslot(id: string, k: Json, ctx: Ctx): Keyslot {
  const what = `keyslot ${id}`;
  const type = str(k.type, ctx, `${what} type`);
  if (type === 'reencrypt') throw unsupported(ctx.where, `a reencryption keyslot (${what}: reencryption in progress; finish it with cryptsetup reencrypt)`);
  if (type !== 'luks2') throw unsupported(ctx.where, `${what} type ${JSON.stringify(type)}`);
  onlyKeys(k, ['type', 'key_size', 'area', 'kdf', 'af', 'priority'], ctx, what);
  const keySize = int(k.key_size, ctx, `${what} key_size`, 1, 512);
  const af = obj(k.af, ctx, `${what} af`);
  onlyKeys(af, ['type', 'stripes', 'hash'], ctx, `${what} af`);
  if (str(af.type, ctx, `${what} af type`) !== 'luks1') throw unsupported(ctx.where, `${what} af type ${JSON.stringify(af.type)}`);
  const stripes = int(af.stripes, ctx, `${what} af stripes`, 1, MAX_STRIPES);
  const area = obj(k.area, ctx, `${what} area`);
  if (str(area.type, ctx, `${what} area type`) !== 'raw') throw unsupported(ctx.where, `${what} area type ${JSON.stringify(area.type)}`);
  onlyKeys(area, ['type', 'offset', 'size', 'encryption', 'key_size'], ctx, `${what} area`);
  xtsEncryption(area.encryption, ctx, `${what} area encryption`);
  const areaKeySize = int(area.key_size, ctx, `${what} area key_size`, 1, 512);
  if (areaKeySize !== 32 && areaKeySize !== 64) throw unsupported(ctx.where, `${what} area key of ${areaKeySize * 8} bits (256 or 512)`);
  const areaOffset = u64(area.offset, ctx, `${what} area offset`);
  const areaSize = u64(area.size, ctx, `${what} area size`);
  if (areaOffset % SECTOR !== 0 || areaSize % SECTOR !== 0) throw corrupt(ctx.where, `${what} area is not 512-byte aligned`);
  if (Math.ceil((keySize * stripes) / SECTOR) * SECTOR > areaSize) throw corrupt(ctx.where, `${what} area (${areaSize} bytes) is too small for ${stripes} stripes of ${keySize} bytes`);
  const priority = k.priority === undefined ? 1 : int(k.priority, ctx, `${what} priority`, 0, 2);
  return {
    id,
    keySize,
    priority,
    kdf: parseKdf(k.kdf, ctx, `${what} kdf`),
    stripes,
    afHash: hash(af.hash, ctx, `${what} af hash`),
    areaOffset,
    areaSize,
    areaKeySize,
  };
}

function parseDigest(id: string, d: Json, ctx: Ctx): VolumeDigest & { segments: string[] } {
  const what = `digest ${id}`;
  const type = str(d.type, ctx, `${what} type`);
  if (type !== 'pbkdf2') throw unsupported(ctx.where, `${what} type ${JSON.stringify(type)}`);
  onlyKeys(d, ['type', 'keyslots', 'segments', 'hash', 'iterations', 'salt', 'digest'], ctx, what);
  const h = hash(d.hash, ctx, `${what} hash`);
  const iterations = int(d.iterations, ctx, `${what} iterations`, 1, 0xffffffff);
  if (iterations > ctx.limits.maxPbkdf2Iterations) throw unsupported(ctx.where, `${what} with ${iterations} iterations (limit ${ctx.limits.maxPbkdf2Iterations})`);
  return {
    hash: h,
    iterations,
    salt: b64(d.salt, ctx, `${what} salt`, 1, 256),
    digest: b64(d.digest, ctx, `${what} digest`, 16, HASH_SIZES[h]),
    keyslots: ids(d.keyslots, ctx, `${what} keyslots`),
    segments: ids(d.segments, ctx, `${what} segments`),
  };
}

export interface Luks2Geometry {
  hdrSize: number;
  deviceSize: number;
}

/** Validate the parsed JSON of a LUKS2 header and return what the rest of tcmu-ts uses. */
export function parseLuks2Json(
  text: string,
  geo: Luks2Geometry,
  where: string,
  limits: LuksLimits,
): Omit<LuksHeader, 'uuid' | 'label' | 'seqid' | 'version' | 'hdrSize'> {
  const ctx: Ctx = { where, limits };
  let root: unknown;
  try {
    root = JSON.parse(text);
  } catch {
    throw corrupt(where, 'the JSON area does not parse');
  }
  const top = obj(root, ctx, 'the JSON metadata');
  onlyKeys(top, ['keyslots', 'tokens', 'segments', 'digests', 'config'], ctx, 'the JSON metadata');

  // config: sizes, activation flags, requirements
  const config = obj(top.config, ctx, 'config');
  onlyKeys(config, ['json_size', 'keyslots_size', 'flags', 'requirements'], ctx, 'config');
  const jsonSize = u64(config.json_size, ctx, 'config json_size');
  if (jsonSize !== geo.hdrSize - 4096) throw corrupt(where, `config json_size ${jsonSize} does not match the header size ${geo.hdrSize}`);
  const keyslotsSize = u64(config.keyslots_size, ctx, 'config keyslots_size');
  if (keyslotsSize % 4096 !== 0) throw corrupt(where, `config keyslots_size ${keyslotsSize} is not 4096-aligned`);
  const flags: string[] = [];
  if (config.flags !== undefined) {
    if (!Array.isArray(config.flags) || config.flags.length > 16) throw corrupt(where, 'config flags is not a short list');
    for (const f of config.flags) {
      const flag = str(f, ctx, 'config flag');
      if (!KNOWN_FLAGS.has(flag)) throw unsupported(where, `activation flag ${JSON.stringify(flag)}`);
      flags.push(flag);
    }
  }
  if (config.requirements !== undefined) {
    const req = obj(config.requirements, ctx, 'config requirements');
    onlyKeys(req, ['mandatory'], ctx, 'config requirements');
    if (req.mandatory !== undefined) {
      if (!Array.isArray(req.mandatory) || req.mandatory.length > 16) throw corrupt(where, 'config requirements mandatory is not a short list');
      if (req.mandatory.length > 0) {
        const names = req.mandatory.map((r) => str(r, ctx, 'a mandatory requirement'));
        throw unsupported(where, `LUKS2 mandatory requirement ${names.map((n) => JSON.stringify(n)).join(', ')} (an online reencryption in progress, or a newer cryptsetup feature)`);
      }
    }
  }

  // segments: exactly one plain aes-xts-plain64 crypt segment
  const segs = entries(top.segments, ctx, 'segments');
  if (segs.length !== 1 || segs[0]![0] !== '0') throw unsupported(where, `${segs.length} data segments (exactly one, segment 0; several mean reencryption)`);
  const seg = segs[0]![1];
  const segType = str(seg.type, ctx, 'segment 0 type');
  if (segType !== 'crypt') throw unsupported(where, `segment type ${JSON.stringify(segType)}`);
  if (seg.integrity !== undefined) throw unsupported(where, 'an integrity-protected segment (dm-integrity / AEAD)');
  if (seg.flags !== undefined && !(Array.isArray(seg.flags) && seg.flags.length === 0)) throw unsupported(where, 'segment flags (reencryption in progress)');
  onlyKeys(seg, ['type', 'offset', 'size', 'iv_tweak', 'encryption', 'sector_size', 'flags'], ctx, 'segment 0');
  xtsEncryption(seg.encryption, ctx, 'segment 0 encryption');
  const sectorSize = int(seg.sector_size, ctx, 'segment 0 sector_size', 512, 4096);
  if (sectorSize !== 512 && sectorSize !== 4096) throw unsupported(where, `encryption sector size ${sectorSize} (512 or 4096)`);
  const dataOffset = u64(seg.offset, ctx, 'segment 0 offset');
  const ivTweak = u64(seg.iv_tweak, ctx, 'segment 0 iv_tweak');
  const dataSize = seg.size === 'dynamic' ? 'dynamic' : u64(seg.size, ctx, 'segment 0 size');
  const metadataEnd = 2 * geo.hdrSize + keyslotsSize;
  if (dataOffset % sectorSize !== 0 || dataOffset < metadataEnd) {
    throw corrupt(where, `segment 0 offset ${dataOffset} is not ${sectorSize}-aligned or lies inside the metadata (ends at ${metadataEnd})`);
  }
  if (dataOffset > geo.deviceSize) throw corrupt(where, `segment 0 offset ${dataOffset} is past the end of the device (${geo.deviceSize} bytes)`);
  if (dataSize !== 'dynamic') {
    if (dataSize % sectorSize !== 0) throw corrupt(where, `segment 0 size ${dataSize} is not a multiple of its sector size`);
    if (dataOffset + dataSize > geo.deviceSize) throw corrupt(where, `segment 0 ends past the end of the device (${geo.deviceSize} bytes)`);
  }

  // keyslots: each area after both header copies, inside keyslots_size, not overlapping
  const keyslots: Keyslot[] = [];
  for (const [id, k] of entries(top.keyslots, ctx, 'keyslots')) {
    const slot = parseKeyslot(id, k, ctx);
    const end = slot.areaOffset + slot.areaSize;
    if (slot.areaOffset < 2 * geo.hdrSize || end > metadataEnd || end > geo.deviceSize) {
      throw corrupt(where, `keyslot ${id} area [${slot.areaOffset}, ${end}) is outside the keyslots area [${2 * geo.hdrSize}, ${Math.min(metadataEnd, geo.deviceSize)})`);
    }
    for (const other of keyslots) {
      if (slot.areaOffset < other.areaOffset + other.areaSize && other.areaOffset < end) throw corrupt(where, `keyslot ${id} area overlaps keyslot ${other.id}'s`);
    }
    keyslots.push(slot);
  }

  // digests: bound to segment 0; every keyslot id they name exists
  const digests: VolumeDigest[] = [];
  for (const [id, d] of entries(top.digests, ctx, 'digests')) {
    const digest = parseDigest(id, d, ctx);
    for (const ks of digest.keyslots) if (!keyslots.some((k) => k.id === ks)) throw corrupt(where, `digest ${id} names keyslot ${ks}, which does not exist`);
    for (const s of digest.segments) if (s !== '0') throw corrupt(where, `digest ${id} names segment ${s}, which does not exist`);
    if (digest.segments.includes('0')) digests.push({ hash: digest.hash, iterations: digest.iterations, salt: digest.salt, digest: digest.digest, keyslots: digest.keyslots });
  }
  if (digests.length === 0) throw corrupt(where, 'no digest covers segment 0');

  // the volume key size: from the keyslots a segment digest vouches for (XTS: 32 or 64 bytes)
  const keySizes = new Set(keyslots.filter((k) => digests.some((d) => d.keyslots.includes(k.id))).map((k) => k.keySize));
  if (keySizes.size > 1) throw corrupt(where, 'the keyslots of segment 0 disagree on the volume key size');
  const keySize = keySizes.size === 1 ? [...keySizes][0]! : 64;
  if (keySize !== 32 && keySize !== 64) throw unsupported(where, `a ${keySize * 8}-bit aes-xts volume key (256 or 512 bits)`);

  // tokens: shape only
  const tokens: LuksToken[] = [];
  for (const [id, t] of entries(top.tokens, ctx, 'tokens')) {
    tokens.push({ id, type: str(t.type, ctx, `token ${id} type`), keyslots: ids(t.keyslots, ctx, `token ${id} keyslots`) });
  }

  return { cipher: 'aes-xts-plain64', keySize, sectorSize, dataOffset, dataSize, ivTweak, keyslots, digests, tokens, flags };
}
