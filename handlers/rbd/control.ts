/**
 * `tcmu-ts snapshot create|list|revert|delete LUN ...` on an rbd LUN: RBD
 * snapshots of the LUN's image, the same ones `rbd snap ls` shows.
 *
 * Online only (the cluster, not a path, holds the image; offline there is
 * `rbd snap`). create and revert run with the LUN quiesced and its
 * image closed, as for qcow2: the daemon drained the initiator's commands,
 * so the snapshot holds every write the initiator saw completed, and a
 * revert is followed by MEDIUM MAY HAVE CHANGED. Each operation connects
 * with the LUN's own options (conf, id, keyring, osd_op_timeout).
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import type { ControlContext, ControlOperation, HandlerControl } from '../../src/backstore/types.js';
import { RbdSession, type RbdImage } from './librbd.js';
import { connectOptions, parseRbdSpec } from './spec.js';

const NAME_ARG = { name: 'name', description: 'snapshot name', type: 'string', positional: true } as const;
/** Ceph accepts more; these names stay printable and usable as `rbd/POOL/IMAGE@NAME` dev_configs. */
const SNAP_NAME = /^[A-Za-z0-9_.+-][A-Za-z0-9_.+=-]{0,127}$/;

function snapName(value: unknown): string {
  const name = String(value);
  if (!SNAP_NAME.test(name)) throw new ConfigError(`rbd: snapshot name "${name.slice(0, 60)}" has characters other than letters, digits and _ . + - = (or is empty)`);
  return name;
}

/** Open the LUN's image on a connection of its own, run `fn`, close both. */
async function withImage<T>(ctx: ControlContext, readOnly: boolean, fn: (image: RbdImage) => Promise<T>): Promise<T> {
  const spec = parseRbdSpec(ctx.config, ctx.options);
  if (spec.snap) throw new ConfigError(`rbd: this LUN serves the snapshot ${spec.pool}/${spec.image}@${spec.snap}; snapshot operations apply to the image head`);
  return RbdSession.withImage(connectOptions(spec), spec.image, readOnly, fn);
}

/**
 * An operation on one named snapshot of the image head: `call` runs on the
 * image opened writable; the result is `{ [key]: name }` and `text(name)`.
 */
function namedSnapshotOperation(
  description: string,
  call: (image: RbdImage, name: string) => Promise<void>,
  key: string,
  text: (name: string) => string,
  how: Pick<ControlOperation, 'quiesce' | 'changesMedium'> = {},
): ControlOperation {
  return {
    description,
    modes: ['online'],
    args: [NAME_ARG],
    ...how,
    async run(ctx, args) {
      const name = snapName(args.name);
      await withImage(ctx, false, (image) => call(image, name));
      return { value: { [key]: name }, text: text(name) };
    },
  };
}

const snapshotCreate = namedSnapshotOperation(
  'create an RBD snapshot of the image',
  (image, name) => image.snapCreate(name),
  'created',
  (name) => `snapshot ${name} created`,
  // The head reads the same afterwards: no MEDIUM MAY HAVE CHANGED.
  { changesMedium: false },
);

const snapshotList: ControlOperation = {
  description: 'list the RBD snapshots of the image',
  modes: ['online'],
  // A read-only look beside the LUN's I/O.
  quiesce: false,
  async run(ctx) {
    const snaps = await withImage(ctx, true, (image) => image.snapList());
    const list = snaps.map((s) => ({ id: s.id, name: s.name, size: s.size, date: s.timestampMs ? new Date(s.timestampMs).toISOString() : undefined }));
    const text = list.map((s) => `${String(s.id).padEnd(6)} ${s.name.padEnd(24)} ${String(s.size).padEnd(14)} ${s.date ?? ''}`).join('\n');
    return { value: list, text };
  },
};

const snapshotRevert = namedSnapshotOperation(
  'roll the image back to an RBD snapshot',
  (image, name) => image.snapRollback(name),
  'reverted',
  (name) => `reverted to ${name}`,
);

const snapshotDelete = namedSnapshotOperation(
  'delete an RBD snapshot',
  (image, name) => image.snapRemove(name),
  'deleted',
  (name) => `snapshot ${name} deleted`,
  // The head is untouched: runs beside the LUN's I/O, as `rbd snap rm` from any host would.
  { quiesce: false },
);

export const rbdControl: HandlerControl = {
  operations: {
    'snapshot.create': snapshotCreate,
    'snapshot.list': snapshotList,
    'snapshot.revert': snapshotRevert,
    'snapshot.delete': snapshotDelete,
  },
};
