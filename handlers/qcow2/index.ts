/**
 * The `qcow2` handler: `qcow2//abs/path/to/image.qcow2`.
 *
 * Options: `compress=zlib|zstd` (qcow2//srv/a.qcow2;compress=zstd): writes are
 * stored compressed (compressed-write.ts); the codec must be the image's
 * compression_type. `key=NAME`, `backing_key=A:B`, `kdf_max_iterations=N`:
 * qcow2's own LUKS encryption (encryption-keys.ts). `auto_compact=off|on|SECONDS`
 * (with compress= only; default on, 5 s of quiet): the daemon compacts the
 * served image by itself (auto-compact.ts). `partial_writes=stage|recompress`
 * (with compress= only; default stage when auto_compact is on): how a write
 * covering part of a compressed cluster is stored (staging.ts). Any other
 * option is refused.
 *
 * Size policy: the LUN exposes the image's virtual size (rounded down to
 * the block size). A configured size larger than that is refused (grow the
 * image first: `resize` or `qemu-img resize`); a smaller one is ignored with
 * a warning, since hiding the tail of a guest disk silently would be worse.
 */
import { isAbsolute } from 'node:path';
import { openerOf } from '../../src/backstore/confine.js';
import { StorageError } from '../../src/backstore/errors.js';
import type { Backstore, Handler, OpenContext } from '../../src/backstore/types.js';
import { Qcow2Backstore } from './backstore.js';
import { qcow2Control } from './control.js';
import { openImage } from './open.js';
import { imageKeys } from './encryption-keys.js';
import { enableWriteCompression } from './compression-mode.js';
import { rejectUnknownOptions } from '../../src/backstore/options.js';
import { AutoCompactor, parseAutoCompact } from './auto-compact.js';
import { enableStaging, parsePartialWrites } from './staging.js';
import { compactOpenImage } from './api.js';

/** Names the LUN in errors (the daemon's logger carries `lun`). */
function lunLabel(ctx: OpenContext): string {
  const bindings = typeof ctx.log.bindings === 'function' ? ctx.log.bindings() : {};
  return typeof bindings.lun === 'string' ? `LUN ${bindings.lun}` : 'unlock';
}

const qcow2Handler: Handler = {
  name: 'qcow2',
  description: 'qcow2 v2/v3 images: copy-on-write, backing chains, compressed clusters, internal snapshots',
  async open(config: string, ctx: OpenContext): Promise<Backstore> {
    if (!isAbsolute(config)) throw new StorageError('EINVAL', `qcow2: image path must be absolute, got '${config}'`);
    rejectUnknownOptions('qcow2', ctx.options ?? {}, ['compress', 'key', 'backing_key', 'kdf_max_iterations', 'auto_compact', 'partial_writes']);
    const keys = imageKeys(ctx.options, ctx.keys, lunLabel(ctx));
    const image = await openImage(config, { readOnly: ctx.readOnly, log: ctx.log, files: openerOf(ctx), keys });
    if (ctx.options.key !== undefined && !image.cryptoRegion) {
      await image.close();
      throw new StorageError('EINVAL', `qcow2: option key= given, but ${config} is not encrypted`);
    }
    const compress = ctx.options?.compress;
    let autoCompactIdle: number | undefined;
    try {
      for (const key of ['auto_compact', 'partial_writes'] as const) {
        if (compress === undefined && ctx.options[key] !== undefined) {
          throw new StorageError('EINVAL', `qcow2: ${key}= needs compress=zlib|zstd (it applies to a LUN that writes compressed)`);
        }
      }
      if (compress !== undefined) {
        autoCompactIdle = parseAutoCompact(ctx.options.auto_compact);
        const partialWrites = parsePartialWrites(ctx.options.partial_writes, autoCompactIdle !== undefined);
        enableWriteCompression(image, compress);
        if (partialWrites === 'stage' && !image.readOnly) enableStaging(image);
      }
    } catch (err) {
      await image.close();
      throw err;
    }
    const store = new Qcow2Backstore(image, ctx.blockSize);
    if (autoCompactIdle !== undefined && !image.readOnly) {
      store.autoCompact = new AutoCompactor(image, autoCompactIdle, (img, signal, kind) => compactOpenImage(img, { signal, automatic: true, stagedOnly: kind === 'staged' }), ctx.log);
    }
    if (ctx.size !== undefined && ctx.size > store.size) {
      await store.close();
      throw new StorageError('EINVAL', `qcow2: configured size ${ctx.size} exceeds the image's virtual size ${store.size}; resize the image first`);
    }
    if (ctx.size !== undefined && ctx.size < store.size) {
      ctx.log.warn({ configured: ctx.size, virtual: store.size }, 'qcow2: configured size is smaller than the image; exposing the full virtual size');
    }
    return store;
  },
  control: qcow2Control,
};

export default qcow2Handler;
