/**
 * AES-XTS with the plain64 IV (dm-crypt's aes-xts-plain64), for a whole run
 * of sectors per call.
 *
 * Two engines behind one interface (XtsEngine):
 * - native (native/xts.cc): OpenSSL contexts keyed once per LUN; 512-byte
 *   sectors as ECB runs between tweak XORs computed in C, 4096-byte ones
 *   through OpenSSL's XTS per sector; output in place or into a second
 *   buffer. Used whenever the addon has it;
 * - JS over Node's crypto (below), the fallback and the reference the
 *   tests compare with:
 *
 * Why not OpenSSL's own "aes-256-xts": it treats everything handed to one
 * cipher object as ONE data unit with ONE tweak, so every sector would need
 * its own createCipheriv (measured: ~150 MB/s at 512-byte sectors, setup
 * dominates). XTS is ECB between two XORs with a per-block tweak:
 *
 *   T(s, 0) = AES-enc(K2, plain64(s)),  T(s, j+1) = T(s, j) * alpha in GF(2^128)
 *   C = AES-enc(K1, P ^ T) ^ T          P = AES-dec(K1, C ^ T) ^ T
 *
 * so a run of N sectors costs one ECB call for all N initial tweaks, one ECB
 * call for all the data, and the doubling and XORs in JS over 32-bit words.
 * plain64: the IV is the 64-bit little-endian sector number, zero padded.
 * No ciphertext stealing is needed: sectors are multiples of 16 bytes.
 *
 * K1 is the first half of the volume key, K2 the second (as dm-crypt and
 * OpenSSL split an XTS key).
 */
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { endianness } from 'node:os';
import { native } from '../native.js';

if (endianness() !== 'LE') throw new Error('src/crypto/xts: the XTS code assumes a little-endian CPU');

export interface XtsEngine {
  /**
   * Whole sectors of `data`, IVs firstIv, firstIv + ivStep, ...: in place,
   * or into `out` (same length, not overlapping `data`), leaving `data`
   * as it was.
   */
  crypt(encrypt: boolean, data: Buffer, sectorSize: number, firstIv: number, ivStep: number, out?: Buffer): void;
  /** Wipe the key material; later calls throw. */
  wipe(): void;
  readonly kind: 'native' | 'js';
}

function nativeEngine(key: Buffer): XtsEngine | undefined {
  let binding: ReturnType<typeof native>;
  try {
    binding = native();
  } catch {
    return undefined;
  }
  if (typeof binding.xtsCreate !== 'function') return undefined;
  const handle = binding.xtsCreate(key);
  // An addon built before `out` existed ignores it and would encrypt `data`
  // in place (the caller's buffers): check once, and copy first if so.
  const probe = Buffer.alloc(32);
  binding.xtsCrypt(handle, true, probe.subarray(0, 16), 16, 0, 1, probe.subarray(16));
  const outOfPlace = probe.subarray(0, 16).every((b) => b === 0);
  return {
    kind: 'native',
    crypt: (encrypt, data, sectorSize, firstIv, ivStep, out) => {
      if (out && !outOfPlace) {
        data.copy(out);
        return binding.xtsCrypt(handle, encrypt, out, sectorSize, firstIv, ivStep);
      }
      binding.xtsCrypt(handle, encrypt, data, sectorSize, firstIv, ivStep, out);
    },
    wipe: () => binding.xtsDestroy(handle),
  };
}

function jsEngine(key: Buffer): XtsEngine {
  let k: XtsKey | null = xtsKey(key);
  return {
    kind: 'js',
    crypt(encrypt, data, sectorSize, firstIv, ivStep, out) {
      if (!k) throw Object.assign(new Error('aes-xts: the key was wiped'), { code: 'EBADF' });
      if (out) {
        if (out.length !== data.length) throw new Error(`xtsCrypt: out is ${out.length} bytes, data ${data.length}`);
        data.copy(out);
      }
      xtsCrypt(k, encrypt, out ?? data, sectorSize, firstIv, ivStep);
    },
    wipe() {
      if (k) wipeXtsKey(k);
      k = null;
    },
  };
}

/** The fastest engine available for a 32- or 64-byte key (the caller may wipe `key` right after). */
export function xtsEngine(key: Buffer, prefer: 'native' | 'js' = 'native'): XtsEngine {
  if (key.length !== 32 && key.length !== 64) throw new Error(`aes-xts needs a 256- or 512-bit key, got ${key.length * 8} bits`);
  return (prefer === 'native' ? nativeEngine(key) : undefined) ?? jsEngine(key);
}

export interface XtsKey {
  /** Data key (first half of the volume key). */
  readonly k1: Buffer;
  /** Tweak key (second half). */
  readonly k2: Buffer;
  /** 'aes-128-ecb' or 'aes-256-ecb', from the half-key length. */
  readonly ecb: string;
}

/** Split a 32- or 64-byte XTS key (aes-128-xts / aes-256-xts). The halves are copies the caller must wipe with wipeXtsKey. */
export function xtsKey(key: Buffer): XtsKey {
  if (key.length !== 32 && key.length !== 64) throw new Error(`aes-xts needs a 256- or 512-bit key, got ${key.length * 8} bits`);
  const half = key.length / 2;
  return {
    k1: Buffer.from(key.subarray(0, half)),
    k2: Buffer.from(key.subarray(half)),
    ecb: half === 16 ? 'aes-128-ecb' : 'aes-256-ecb',
  };
}

export function wipeXtsKey(key: XtsKey): void {
  key.k1.fill(0);
  key.k2.fill(0);
}

function ecb(key: Buffer, algo: string, encrypt: boolean, input: Buffer): Buffer {
  const c = encrypt ? createCipheriv(algo, key, null) : createDecipheriv(algo, key, null);
  c.setAutoPadding(false);
  const out = c.update(input);
  c.final(); // no padding: nothing left over
  return out;
}

/** A Uint32Array over a Buffer whose byteOffset is a multiple of 4 (all Buffers we pass are). */
function words(buf: Buffer): Uint32Array {
  return new Uint32Array(buf.buffer, buf.byteOffset, buf.length >>> 2);
}

/**
 * Fill `tweaks` (same length as the data) with every block's tweak for
 * `count` sectors of `sectorSize` bytes, IVs firstIv, firstIv + ivStep, ...
 */
function fillTweaks(key: XtsKey, firstIv: number, ivStep: number, count: number, sectorSize: number, tweaks: Uint32Array): void {
  const ivs = Buffer.alloc(count * 16);
  for (let i = 0; i < count; i++) ivs.writeBigUInt64LE(BigInt(firstIv + i * ivStep), i * 16);
  const t0 = words(ecb(key.k2, key.ecb, true, ivs));
  const blocks = sectorSize >>> 4;
  let w = 0;
  for (let s = 0; s < count; s++) {
    let a = t0[s * 4]!;
    let b = t0[s * 4 + 1]!;
    let c = t0[s * 4 + 2]!;
    let d = t0[s * 4 + 3]!;
    for (let j = 0; j < blocks; j++) {
      tweaks[w] = a;
      tweaks[w + 1] = b;
      tweaks[w + 2] = c;
      tweaks[w + 3] = d;
      w += 4;
      // multiply by alpha: 128-bit little-endian shift left, reduce by x^128 = x^7 + x^2 + x + 1
      const carry = d >>> 31;
      d = (d << 1) | (c >>> 31);
      c = (c << 1) | (b >>> 31);
      b = (b << 1) | (a >>> 31);
      a = (a << 1) ^ (carry * 0x87);
    }
  }
}

function xorInto(dst: Uint32Array, src: Uint32Array): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/**
 * Encrypt or decrypt `data` in place: `data.length / sectorSize` sectors,
 * the first with IV `firstIv` (the next with firstIv + ivStep, ...).
 * `ivStep` is 1 for 512-byte sectors; for larger sectors dm-crypt still
 * counts IVs in 512-byte units unless iv_large_sectors is set, which LUKS2
 * does not set, so the caller passes sectorSize / 512.
 */
export function xtsCrypt(key: XtsKey, encrypt: boolean, data: Buffer, sectorSize: number, firstIv: number, ivStep: number): void {
  if (data.length === 0) return;
  if (data.length % sectorSize !== 0 || (data.byteOffset & 3) !== 0) {
    throw new Error(`xtsCrypt: ${data.length} bytes at offset ${data.byteOffset} is not whole aligned sectors of ${sectorSize}`);
  }
  const count = data.length / sectorSize;
  const tweakBuf = Buffer.allocUnsafe(data.length);
  const tweaks = words(tweakBuf);
  fillTweaks(key, firstIv, ivStep, count, sectorSize, tweaks);
  const d = words(data);
  xorInto(d, tweaks);
  const mid = words(ecb(key.k1, key.ecb, encrypt, data));
  for (let i = 0; i < d.length; i++) d[i] = mid[i]! ^ tweaks[i]!;
}
