/**
 * LUKS1 on-disk header (592 bytes at offset 0, big-endian), as cryptsetup
 * writes it:
 *
 *   0 magic "LUKS\xba\xbe"  6 version=1  8 cipherName[32]  40 cipherMode[32]
 *   72 hashSpec[32]  104 payloadOffset (512-byte sectors)  108 keyBytes
 *   112 mkDigest[20]  132 mkDigestSalt[32]  164 mkDigestIterations  168 uuid[40]
 *   208 8 keyslots of 48 bytes: active (0x00AC71F3 / 0x0000DEAD), iterations,
 *       salt[32], keyMaterialOffset (sectors), stripes
 *
 * The volume key digest is PBKDF2(hashSpec, key, mkDigestSalt, iterations, 20).
 */
import { corrupt, unsupported } from './errors.js';
import { SECTOR, MAX_STRIPES, type LuksLimits } from './limits.js';
import { isHashName, type Keyslot, type LuksHeader } from './model.js';

export const LUKS_MAGIC = Buffer.from([0x4c, 0x55, 0x4b, 0x53, 0xba, 0xbe]);
export const LUKS1_HEADER_SIZE = 592;
export const LUKS1_SLOTS = 8;
export const SLOT_ACTIVE = 0x00ac71f3;
export const SLOT_INACTIVE = 0x0000dead;
const SLOT_BASE = 208;
const SLOT_SIZE = 48;

/** A NUL-terminated ASCII field; refuses bytes outside printable ASCII. */
export function cString(buf: Buffer, at: number, size: number, where: string, field: string): string {
  const field_ = buf.subarray(at, at + size);
  const nul = field_.indexOf(0);
  if (nul < 0) throw corrupt(where, `${field} is not NUL-terminated`);
  const bytes = field_.subarray(0, nul);
  for (const b of bytes) if (b < 0x20 || b > 0x7e) throw corrupt(where, `${field} holds a non-printable byte`);
  return bytes.toString('latin1');
}

export function parseLuks1(hdr: Buffer, deviceSize: number, where: string, limits: LuksLimits): LuksHeader {
  if (hdr.length < LUKS1_HEADER_SIZE) throw corrupt(where, 'the device is too small for a LUKS1 header');
  const cipherName = cString(hdr, 8, 32, where, 'cipher name');
  const cipherMode = cString(hdr, 40, 32, where, 'cipher mode');
  const hashSpec = cString(hdr, 72, 32, where, 'hash spec');
  if (cipherName !== 'aes' || cipherMode !== 'xts-plain64') {
    throw unsupported(where, `LUKS1 cipher ${JSON.stringify(`${cipherName}-${cipherMode}`)} (only aes-xts-plain64)`);
  }
  if (!isHashName(hashSpec)) throw unsupported(where, `LUKS1 hash ${JSON.stringify(hashSpec)} (sha1, sha256, sha512 are)`);
  const payloadOffset = hdr.readUInt32BE(104) * SECTOR;
  const keyBytes = hdr.readUInt32BE(108);
  if (keyBytes !== 32 && keyBytes !== 64) throw unsupported(where, `a ${keyBytes * 8}-bit aes-xts key (256 or 512 bits are)`);
  const mkIterations = hdr.readUInt32BE(164);
  if (mkIterations < 1) throw corrupt(where, 'the volume key digest has 0 iterations');
  if (mkIterations > limits.maxPbkdf2Iterations) throw unsupported(where, `a digest with ${mkIterations} PBKDF2 iterations (limit ${limits.maxPbkdf2Iterations})`);
  const uuid = cString(hdr, 168, 40, where, 'uuid');
  if (payloadOffset < LUKS1_HEADER_SIZE) throw corrupt(where, `payload offset ${payloadOffset} lies inside the header`);
  if (payloadOffset > deviceSize) throw corrupt(where, `payload offset ${payloadOffset} is past the end of the device (${deviceSize} bytes)`);

  const keyslots: Keyslot[] = [];
  const areas: Array<[number, number]> = [];
  for (let i = 0; i < LUKS1_SLOTS; i++) {
    const at = SLOT_BASE + i * SLOT_SIZE;
    const active = hdr.readUInt32BE(at);
    const iterations = hdr.readUInt32BE(at + 4);
    const areaOffset = hdr.readUInt32BE(at + 40) * SECTOR;
    const stripes = hdr.readUInt32BE(at + 44);
    if (active !== SLOT_ACTIVE && active !== SLOT_INACTIVE) throw corrupt(where, `keyslot ${i} state 0x${active.toString(16)} is neither active nor inactive`);
    if (active !== SLOT_ACTIVE) continue;
    if (stripes < 1 || stripes > MAX_STRIPES) throw corrupt(where, `keyslot ${i} has ${stripes} AF stripes (1..${MAX_STRIPES})`);
    if (iterations < 1) throw corrupt(where, `keyslot ${i} has 0 PBKDF2 iterations`);
    if (iterations > limits.maxPbkdf2Iterations) throw unsupported(where, `keyslot ${i} with ${iterations} PBKDF2 iterations (limit ${limits.maxPbkdf2Iterations})`);
    const areaSize = Math.ceil((keyBytes * stripes) / SECTOR) * SECTOR;
    if (areaOffset < LUKS1_HEADER_SIZE || areaOffset + areaSize > payloadOffset) {
      throw corrupt(where, `keyslot ${i} key material [${areaOffset}, ${areaOffset + areaSize}) is not between the header and the payload (${payloadOffset})`);
    }
    for (const [o, s] of areas) {
      if (areaOffset < o + s && o < areaOffset + areaSize) throw corrupt(where, `keyslot ${i} key material overlaps another keyslot's`);
    }
    areas.push([areaOffset, areaSize]);
    keyslots.push({
      id: String(i),
      keySize: keyBytes,
      priority: 1,
      kdf: { type: 'pbkdf2', hash: hashSpec, iterations, salt: Buffer.from(hdr.subarray(at + 8, at + 40)) },
      stripes,
      afHash: hashSpec,
      areaOffset,
      areaSize,
      areaKeySize: keyBytes,
    });
  }
  return {
    version: 1,
    uuid,
    label: '',
    cipher: 'aes-xts-plain64',
    keySize: keyBytes,
    sectorSize: SECTOR,
    dataOffset: payloadOffset,
    dataSize: 'dynamic',
    ivTweak: 0,
    keyslots,
    digests: [
      {
        hash: hashSpec,
        iterations: mkIterations,
        salt: Buffer.from(hdr.subarray(132, 164)),
        digest: Buffer.from(hdr.subarray(112, 132)),
        keyslots: keyslots.map((k) => k.id),
      },
    ],
    tokens: [],
    flags: [],
    hdrSize: 0,
    seqid: 0,
  };
}
