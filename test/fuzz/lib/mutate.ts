/**
 * Structure-blind mutations of a byte buffer, biased towards the values
 * that break parsers: 0, all-ones, powers of two, sign and 2^31/2^32/2^53
 * boundaries, written big- or little-endian at (optionally) chosen offsets.
 */
import type { Rng } from './rng.js';

const INTERESTING_U64: readonly bigint[] = [
  0n, 1n, 0x1ffn, 0x200n, 0x10000n, 0x7fffffffn, 0x80000000n, 0xffffffffn, 0x100000000n,
  (1n << 53n) - 1n, 1n << 53n, 1n << 56n, (1n << 63n) - 1n, 1n << 63n, (1n << 64n) - 1n,
];

export interface MutateOptions {
  /** Offsets worth hitting more often (e.g. header fields); each mutation picks one with probability `hotBias`. */
  hot?: readonly number[];
  hotBias?: number;
  /** How many mutations to apply (default 1..4). */
  count?: number;
}

/** Returns a mutated copy of `input`; `input` is untouched. */
export function mutate(rng: Rng, input: Buffer, opts: MutateOptions = {}): Buffer {
  let buf = Buffer.from(input);
  const n = opts.count ?? rng.between(1, 4);
  for (let i = 0; i < n; i++) {
    if (buf.length === 0) break;
    const at = opts.hot?.length && rng.chance(opts.hotBias ?? 0.5) ? rng.pick(opts.hot) % buf.length : rng.below(buf.length);
    switch (rng.below(7)) {
      case 0:
        buf[at] = buf[at]! ^ (1 << rng.below(8));
        break;
      case 1:
        buf[at] = rng.pick([0, 0xff, 0x7f, 0x80, 1, rng.below(256)]);
        break;
      case 2:
      case 3: {
        const width = rng.pick([2, 4, 8]);
        if (at + width > buf.length) break;
        const v = rng.pick(INTERESTING_U64) + BigInt(rng.chance(0.3) ? rng.below(3) - 1 : 0);
        const masked = BigInt.asUintN(width * 8, v);
        const bytes = Buffer.alloc(8);
        bytes.writeBigUInt64BE(masked);
        const be = bytes.subarray(8 - width);
        (rng.chance(0.85) ? be : Buffer.from(be).reverse()).copy(buf, at);
        break;
      }
      case 4: {
        const len = Math.min(buf.length - at, rng.between(1, 64));
        rng.bytes(len).copy(buf, at);
        break;
      }
      case 5: {
        // Copy a chunk from elsewhere (duplicates plausible-looking structures).
        const len = Math.min(buf.length - at, rng.between(8, 512));
        const from = rng.below(Math.max(1, buf.length - len));
        buf.copy(buf, at, from, from + len);
        break;
      }
      case 6:
        if (rng.chance(0.5)) buf = buf.subarray(0, rng.below(buf.length + 1));
        else buf = Buffer.concat([buf, Buffer.alloc(rng.between(1, 4096))]);
        break;
    }
  }
  return buf;
}
