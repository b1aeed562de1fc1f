/**
 * The 'rbd' handler: `rbd/POOL/IMAGE[@SNAP];conf=...;id=...;keyring=...;osd_op_timeout=...`,
 * a Ceph RBD image behind a LUN through librbd (see ./spec.ts for the
 * options, ./store.ts for how each SCSI operation maps to librbd, and
 * native/rbd.cc for the binding). A snapshot opens read-only.
 *
 * librbd is optional at build time: without it this handler is still listed
 * but every open fails with a message saying how to get it.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import type { Backstore, Handler, OpenContext } from '../../src/backstore/types.js';
import { RbdSession, type RbdImage } from './librbd.js';
import { connectOptions, parseRbdSpec, type RbdSpec } from './spec.js';
import { RbdConnection, type RbdHandles } from './connection.js';
import { rbdStore } from './store.js';
import { fencePredecessor } from './predecessor.js';
import { rbdControl } from './control.js';

export { parseRbdSpec } from './spec.js';

/** Connect as the spec says and open its image (head or snapshot). */
async function connectAndOpen(spec: RbdSpec, readOnly: boolean, where: string): Promise<RbdHandles> {
  let session: RbdSession;
  try {
    session = await RbdSession.connect(connectOptions(spec));
  } catch (err) {
    throw new ConfigError(`${where}: cannot connect as client.${spec.id} with ${spec.conf}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return { session, image: await session.open(spec.image, spec.snap, readOnly) };
  } catch (err) {
    await session.shutdown().catch(() => {});
    throw err;
  }
}

async function open(config: string, ctx: OpenContext): Promise<Backstore> {
  const spec = parseRbdSpec(config, ctx.options);
  const readOnly = ctx.readOnly || spec.snap !== '';
  const where = `rbd ${spec.pool}/${spec.image}${spec.snap ? `@${spec.snap}` : ''}`;
  let handles: RbdHandles;
  try {
    handles = await connectAndOpen(spec, readOnly, where);
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${where}: ${(err as Error).message}`, { cause: err });
  }
  const { session, image } = handles;
  try {
    const imageSize = image.size();
    const size = ctx.size ?? imageSize - (imageSize % ctx.blockSize);
    if (size > imageSize) {
      throw new ConfigError(`${where}: the LUN is ${size} bytes but the image only ${imageSize}; grow it with "rbd resize" first`);
    }
    if (size === 0) throw new ConfigError(`${where}: the image is smaller than one ${ctx.blockSize}-byte block`);
    ctx.log.debug({ pool: spec.pool, image: spec.image, snap: spec.snap, size, imageSize, readOnly }, 'rbd: image open');
    if (!readOnly && ctx.runtimeDir) await fencePredecessor(session, image, ctx.runtimeDir, ctx.log);
    const connection = new RbdConnection(handles, () => connectAndOpen(spec, readOnly, where), ctx.log);
    const store = rbdStore({ connection, size, blockSize: ctx.blockSize, readOnly, writeCache: spec.cache === 'writeback' });
    if (!readOnly && ctx.onMediumResized) connection.eachImage(sizeFollower(imageSize, ctx.blockSize, ctx.onMediumResized, ctx));
    return store;
  } catch (err) {
    await image.close().catch(() => {});
    await session.shutdown().catch(() => {});
    if (err instanceof ConfigError) throw err;
    throw new ConfigError(`${where}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * `rbd resize` by any client changes the image header; librbd's header watch
 * tells us, and the daemon then resizes the LUN (the initiator gets
 * CAPACITY DATA HAS CHANGED). Other header changes (snapshots, lock owner)
 * leave the size alone and are ignored. A read-only open has no watch.
 * Returns what watches one image (the connection calls it again for an
 * image reopened after a fence); the known size carries over.
 */
function sizeFollower(initial: number, blockSize: number, onResized: (size: number) => void, ctx: OpenContext): (image: RbdImage) => void {
  let known = initial;
  return (image) => {
    const check = () => {
      let now: number;
      try {
        now = image.size();
      } catch (err) {
        ctx.log.warn({ err }, 'rbd: cannot read the image size after a header change');
        return;
      }
      if (now === known) return;
      known = now;
      ctx.log.info({ image: image.name, size: now }, 'rbd: image resized');
      onResized(now - (now % blockSize));
    };
    image.watch(check);
    check(); // a reopened image may have grown meanwhile
  };
}

const handler: Handler = {
  name: 'rbd',
  description: 'Ceph RBD image through librbd (aio, atomic COMPARE AND WRITE on the cluster); rbd/POOL/IMAGE[@SNAP]',
  open,
  control: rbdControl,
};

export default handler;
