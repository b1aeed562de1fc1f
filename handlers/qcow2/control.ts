/**
 * The qcow2 handler's control operations (Handler.control): what
 * `tcmu-ts image create|info|check|compact` and `tcmu-ts snapshot
 * create|list|revert|delete` run. The CLI and the daemon find them through
 * the registry; online, `ctx.config` is the qcow2 layer's image path
 * wherever that layer sits in the LUN's stack, and every file is opened
 * through `ctx.files` (the daemon's confined opener).
 */
import { isAbsolute } from 'node:path';
import { openerOf, type FileOpener } from '../../src/backstore/confine.js';
import { StorageError } from '../../src/backstore/errors.js';
import type { ControlArgs, ControlContext, ControlOperation, HandlerControl } from '../../src/backstore/types.js';
import { checkImage, compactImageFile, compactOpenImage, createImage, describeImage, imageInfo, snapshotCreate, snapshotDelete, snapshotList, snapshotRevert } from './api.js';
import { QCOW2_MAGIC } from './format.js';
import { Qcow2Backstore } from './backstore.js';
import type { CompactResult } from './compaction.js';
import type { Qcow2Image } from './image.js';
import { readKeyFile } from '../../src/crypto/key-file.js';

/** The image a control operation works on; a served LUN's must be absolute, as `open` requires. */
function imagePath(ctx: ControlContext): string {
  if (ctx.mode === 'online' && !isAbsolute(ctx.config)) {
    throw new StorageError('EINVAL', `qcow2: image path must be absolute, got '${ctx.config}'`);
  }
  return ctx.config;
}

const files = (ctx: ControlContext) => openerOf(ctx);
const snapshotName = (args: ControlArgs) => args.name as string;
const NAME_ARG = { name: 'name', description: 'snapshot name', type: 'string', positional: true } as const;

const imageCreate: ControlOperation = {
  description: 'create a qcow2 image (an overlay with --backing)',
  modes: ['offline'],
  args: [
    { name: 'size', type: 'size', required: true, description: 'virtual size, e.g. 10G (overlays may take the base size: pass it anyway)' },
    { name: 'cluster-size', type: 'size', default: '64k', description: 'cluster size, 512 B to 2 MiB' },
    { name: 'backing', type: 'string', description: 'backing (base) image' },
    { name: 'backing-format', type: 'string', choices: ['qcow2', 'raw'], default: 'qcow2', description: 'qcow2 or raw' },
    { name: 'compat', type: 'string', choices: ['2', '3'], default: '3', description: '2 or 3' },
    { name: 'encrypt', type: 'string', choices: ['luks', 'luks1'], description: "qcow2's own LUKS encryption (QEMU encrypt.format=luks; a LUKS1 header inside the image)" },
    { name: 'key-file', type: 'string', description: 'with --encrypt: the passphrase file, used whole (as cryptsetup --key-file); mode 0600' },
    { name: 'pbkdf2-iterations', type: 'integer', description: 'with --encrypt: PBKDF2-sha256 iterations of the keyslot (default 1000000)' },
    { name: 'compress', type: 'string', choices: ['zlib', 'zstd'], description: "the image's compression_type (for LUNs with compress=...; zstd needs compat 3)" },
  ],
  async run(ctx, args) {
    const path = imagePath(ctx);
    const backing = args.backing as string | undefined;
    if ((args.encrypt === undefined) !== (args['key-file'] === undefined)) {
      throw new StorageError('EINVAL', 'qcow2: --encrypt luks and --key-file go together');
    }
    if (args.encrypt !== undefined && args.compress !== undefined) {
      throw new StorageError('EINVAL', 'qcow2: --compress and --encrypt do not mix (QEMU refuses compression on encrypted images)');
    }
    const passphrase = args.encrypt ? await readKeyFile(args['key-file'] as string, files(ctx)) : undefined;
    try {
      await createImage(path, {
        size: args.size as number,
        clusterSize: args['cluster-size'] as number,
        backing,
        backingFormat: backing ? (args['backing-format'] as 'qcow2' | 'raw') : undefined,
        version: Number(args.compat) as 2 | 3,
        compressionType: args.compress as 'zlib' | 'zstd' | undefined,
        files: files(ctx),
        encrypt: passphrase ? { passphrase, iterations: args['pbkdf2-iterations'] as number | undefined } : undefined,
      });
    } finally {
      passphrase?.fill(0);
    }
    return { value: { created: path, ...(passphrase ? { encrypted: true } : {}) }, text: `created ${path}${passphrase ? ' (LUKS encrypted)' : ''}` };
  },
};

/** The open image of a served LUN's qcow2 layer (online operations that run beside its I/O). */
function openImageOf(ctx: ControlContext): Qcow2Image {
  if (!(ctx.live instanceof Qcow2Backstore)) throw new StorageError('EINVAL', `qcow2: ${ctx.config}: the LUN's qcow2 layer is not open`);
  return ctx.live.image;
}

const imageInfoOp: ControlOperation = {
  description: 'show the header, backing file, flags, snapshots and space (allocated, compressed clusters, ratio) of a qcow2 image',
  modes: ['offline', 'online'],
  // Online it reads the served image as it is open, beside the LUN's I/O.
  quiesce: false,
  async run(ctx) {
    return { value: ctx.mode === 'online' ? await describeImage(openImageOf(ctx)) : await imageInfo(imagePath(ctx), files(ctx)) };
  },
};

const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

const imageCompact: ControlOperation = {
  description: 'reclaim space in a compressed image: empty partly dead compressed clusters, punch out free ones (offline, or on a served compress= LUN while it serves)',
  modes: ['offline', 'online'],
  // Online it runs beside the LUN's I/O on the open image (compactOpenImage), never quiesced:
  // a compaction takes as long as the data it moves, longer than initiators wait.
  quiesce: false,
  args: [
    {
      name: 'recompress',
      type: 'boolean',
      description:
        'also compress every uncompressed cluster the image owns (left by a daemon stopped uncleanly while writes were staged, or data written without compress=); without it only the staged clusters a served LUN remembers are compressed',
    },
  ],
  async run(ctx, args) {
    let r: CompactResult;
    const all = args.recompress === true ? { recompress: 'all' as const } : {};
    if (ctx.mode === 'online') {
      r = await compactOpenImage(openImageOf(ctx), { signal: ctx.signal, ...all });
    } else {
      r = await compactImageFile(imagePath(ctx), all, files(ctx));
    }
    return {
      value: r,
      text: `compressed ${r.recompressedClusters} uncompressed clusters, moved ${r.movedClusters} clusters, punched ${r.punchedClusters} free clusters; allocated ${mib(r.fileBytesAllocatedBefore)} -> ${mib(r.fileBytesAllocatedAfter)}`,
    };
  },
};

const imageCheck: ControlOperation = {
  description: 'check metadata consistency; exit 2 on corruption, 3 on leaks only',
  modes: ['offline'],
  args: [{ name: 'repair-leaks', type: 'boolean', description: 'free leaked clusters (never touches corruptions)' }],
  async run(ctx, args) {
    const repair = args['repair-leaks'] === true;
    const result = await checkImage(imagePath(ctx), repair ? { repair: 'leaks' } : undefined, files(ctx));
    const exitCode = result.corruptions > 0 ? 2 : result.leaks > 0 && !repair ? 3 : 0;
    return { value: result, exitCode };
  },
};

const snapshotCreateOp: ControlOperation = {
  description: 'create an internal snapshot',
  modes: ['offline', 'online'],
  args: [NAME_ARG],
  // The active image reads the same afterwards: no MEDIUM MAY HAVE CHANGED.
  changesMedium: false,
  async run(ctx, args) {
    const info = await snapshotCreate(imagePath(ctx), snapshotName(args), files(ctx));
    return { value: info, text: `snapshot ${snapshotName(args)} created` };
  },
};

const snapshotListOp: ControlOperation = {
  description: 'list internal snapshots',
  modes: ['offline', 'online'],
  // The snapshot table only changes through these operations, which quiesce.
  quiesce: false,
  async run(ctx) {
    const list = await snapshotList(imagePath(ctx), files(ctx));
    const text = list.map((s) => `${String(s.id ?? '').padEnd(6)} ${String(s.name).padEnd(24)} ${s.date ?? ''}`).join('\n');
    return { value: list, text };
  },
};

const snapshotRevertOp: ControlOperation = {
  description: 'revert the image to an internal snapshot',
  modes: ['offline', 'online'],
  args: [NAME_ARG],
  async run(ctx, args) {
    await snapshotRevert(imagePath(ctx), snapshotName(args), files(ctx));
    return { value: { reverted: snapshotName(args) }, text: `reverted to ${snapshotName(args)}` };
  },
};

const snapshotDeleteOp: ControlOperation = {
  description: 'delete an internal snapshot and free its clusters',
  modes: ['offline', 'online'],
  args: [NAME_ARG],
  async run(ctx, args) {
    await snapshotDelete(imagePath(ctx), snapshotName(args), files(ctx));
    return { value: { deleted: snapshotName(args) }, text: `snapshot ${snapshotName(args)} deleted` };
  },
};

/** True when the file starts with the qcow2 magic ("QFI\xfb"). */
async function probe(path: string, opener: FileOpener): Promise<boolean> {
  const fh = await opener.openHandle(path);
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    return bytesRead === 4 && head.readUInt32BE(0) === QCOW2_MAGIC;
  } finally {
    await fh.close();
  }
}

export const qcow2Control: HandlerControl = {
  operations: {
    'image.create': imageCreate,
    'image.info': imageInfoOp,
    'image.check': imageCheck,
    'image.compact': imageCompact,
    'snapshot.create': snapshotCreateOp,
    'snapshot.list': snapshotListOp,
    'snapshot.revert': snapshotRevertOp,
    'snapshot.delete': snapshotDeleteOp,
  },
  probe,
};
