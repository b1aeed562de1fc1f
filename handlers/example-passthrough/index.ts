/**
 * example-passthrough: the template for writing a LAYER — a handler that
 * sits on top of another opened store (crypt over qcow2 over file). It
 * changes nothing: every call goes to `ctx.lower` unchanged. Copy it, then
 * change only what your layer transforms.
 *
 * `ctx.lower` is the store below, normalised by the core: every method is
 * there (emulated or refusing where the store below lacks it) and its
 * capabilities are decided, so a layer never tests `lower.write && ...`.
 *
 * Use it in a stack (it cannot be a dev_config subtype on its own, and the
 * daemon serves example-* subtypes only when named in `serve --subtypes`):
 *
 *   openStack([
 *     { handler: 'file', config: '/var/lib/lun0.img' },
 *     { handler: 'example-passthrough', config: '' },
 *   ], base)
 *
 * THE RULE FOR TRANSFORMING LAYERS
 * A pass-through is only correct for operations whose meaning the layer
 * does not change. This one changes nothing, so it may forward everything.
 * A layer that transforms data must decide per operation:
 *
 *   - read/write: transform (decrypt/encrypt, decompress/compress) into
 *     the layer's OWN buffers; never modify the caller's write buffers —
 *     they may be the kernel's data area or the core's shared zero buffer.
 *   - writeZeroes (WRITE SAME): below an encryption layer, "zeros" on disk
 *     decrypt to garbage. Forwarding it would corrupt data. Leave
 *     writeZeroes out, and the core emulates it by writing zeros through
 *     YOUR write (which encrypts them).
 *   - discard (UNMAP): a deallocated range below reads as zeros there,
 *     which again decrypt to garbage, and discard promises the range
 *     reads as zeros afterwards. Leave it out (the LUN is then not thin),
 *     or implement it knowing what the lower layer returns.
 *   - blockStatus: only forward if "deallocated below" still means
 *     "reads as zeros above".
 *   - size/blockSize: a layer with a header (LUKS) exposes less than the
 *     lower store holds; adjust offsets and size, never forward them raw.
 *   - flush, fua, close: flush and FUA must reach the lower store or
 *     durability is a lie, so forward them (a FUA write to `lower` is
 *     durable when it settles). Do NOT close `lower`: the stack owns
 *     every layer and closes them all, top first.
 *
 * Never silently forward an operation you have not thought about: leave it
 * out and let the core's default (emulation or refusal) apply.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { rejectUnknownOptions } from '../../src/backstore/options.js';
import type { Backstore, Handler, OpenContext } from '../../src/backstore/types.js';

function openPassthrough(config: string, ctx: OpenContext): Backstore {
  const lower = ctx.lower;
  // The core only passes `lower` to handlers that declare `layer: true` and are not at the bottom.
  if (!lower) throw new ConfigError('example-passthrough: needs a lower layer (use it in a stack)');
  if (config !== '') throw new ConfigError(`example-passthrough: takes no config, got "${config}"`);
  rejectUnknownOptions('example-passthrough', ctx.options, []);

  // `lower` is a LunStore: the core has already filled in every method
  // (emulating or refusing what the store below lacks) and decided its
  // capabilities. So there is nothing to test, only to forward.
  return {
    // Geometry and capabilities: unchanged, so copy them from below. A
    // layer that changes them (a header, a different block size) says so here.
    get size() {
      return lower.size; // a getter: a resize below is seen here too
    },
    blockSize: lower.blockSize,
    readOnly: ctx.readOnly || lower.readOnly,
    writeCache: lower.writeCache,
    // A FUA write to `lower` is durable when it settles (the core adds the
    // flush below if that store needs one), so forwarding opts.fua is enough.
    fua: true,
    thin: lower.thin,

    // Return the lower store's result as is: a synchronous store stays synchronous.
    read: (offset, iov) => lower.read(offset, iov),
    write: (offset, iov, opts) => lower.write(offset, iov, opts),
    flush: () => lower.flush(),
    discard: (offset, length) => lower.discard(offset, length),
    writeZeroes: (offset, length, opts) => lower.writeZeroes(offset, length, opts),
    // Forwarded only when real below, so GET LBA STATUS is answered by the
    // core's own default rather than by a forwarded one.
    blockStatus: lower.hasBlockStatus ? (offset, length) => lower.blockStatus(offset, length) : undefined,
    resize: (newSize) => lower.resize(newSize),

    // Release only what THIS layer owns (nothing here). `lower` is closed by the stack.
    close: () => {},
  };
}

const passthrough: Handler = {
  name: 'example-passthrough',
  description: 'a layer that forwards every call to the layer below (a template for layers)',
  layer: true,
  open: openPassthrough,
};

export default passthrough;
