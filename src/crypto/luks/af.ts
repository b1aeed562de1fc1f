/**
 * The LUKS anti-forensic splitter (AF, "luks1" type in LUKS2): the key is
 * stored as `stripes` blocks that must ALL be intact to recover it, so
 * destroying a few sectors destroys the key.
 *
 *   d_0 = 0;  d_{i+1} = diffuse(d_i XOR s_i)  for i < stripes-1;  key = d_{stripes-1} XOR s_{stripes-1}
 *
 * diffuse(): the block in hash-sized pieces, piece j replaced by the first
 * bytes of HASH(be32(j) || piece) (the last piece may be short).
 */
import { createHash, randomFillSync } from 'node:crypto';
import { HASH_SIZES, type HashName } from './model.js';

function diffuse(block: Buffer, hash: HashName): void {
  const digestSize = HASH_SIZES[hash];
  const counter = Buffer.alloc(4);
  for (let j = 0, at = 0; at < block.length; j++, at += digestSize) {
    const len = Math.min(digestSize, block.length - at);
    counter.writeUInt32BE(j);
    const d = createHash(hash).update(counter).update(block.subarray(at, at + len)).digest();
    d.copy(block, at, 0, len);
    d.fill(0);
  }
}

function xorInto(dst: Buffer, src: Buffer): void {
  for (let i = 0; i < dst.length; i++) dst[i]! ^= src[i]!;
}

/**
 * 4000 stripes cost ~8000 hash calls (tens of ms): give the event loop back
 * every this many stripes, so other LUNs keep serving while one LUN opens.
 */
const STRIPES_PER_SLICE = 100;
const yieldToLoop = () => new Promise<void>((resolve) => setImmediate(resolve));

/** Recover a `keySize`-byte key from `material` (at least keySize * stripes bytes). The caller wipes the result. */
export async function afMerge(material: Buffer, keySize: number, stripes: number, hash: HashName): Promise<Buffer> {
  const d = Buffer.alloc(keySize);
  for (let i = 0; i < stripes - 1; i++) {
    if (i > 0 && i % STRIPES_PER_SLICE === 0) await yieldToLoop();
    xorInto(d, material.subarray(i * keySize, (i + 1) * keySize));
    diffuse(d, hash);
  }
  xorInto(d, material.subarray((stripes - 1) * keySize, stripes * keySize));
  return d;
}

/** Split `key` into keySize * stripes bytes of AF material (random stripes, the last one computed). */
export async function afSplit(key: Buffer, stripes: number, hash: HashName): Promise<Buffer> {
  const keySize = key.length;
  const out = Buffer.alloc(keySize * stripes);
  randomFillSync(out, 0, keySize * (stripes - 1));
  const d = Buffer.alloc(keySize);
  for (let i = 0; i < stripes - 1; i++) {
    if (i > 0 && i % STRIPES_PER_SLICE === 0) await yieldToLoop();
    xorInto(d, out.subarray(i * keySize, (i + 1) * keySize));
    diffuse(d, hash);
  }
  const last = out.subarray((stripes - 1) * keySize);
  for (let i = 0; i < keySize; i++) last[i] = d[i]! ^ key[i]!;
  d.fill(0);
  return out;
}
