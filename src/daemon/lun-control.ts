/**
 * Online control operations on a served LUN ('snapshot.create', ...): the
 * layer of the LUN's stack that offers the operation runs it on its own
 * config (the qcow2 layer's image path, under a crypt layer or not), with
 * the LUN quiesced (new commands held, in-flight ones finished, store
 * closed, reopened afterwards) unless the operation declares it needs no
 * quiescing; such an operation also gets the open layer (`ctx.live`), to
 * work on the image while it serves. Every file it opens goes through the
 * daemon's opener.
 */
import type { Logger } from 'pino';
import type { FileOpener } from '../backstore/confine.js';
import { coerceControlArgs, splitOperationName } from '../backstore/control.js';
import { layerOperation } from '../backstore/control-registry.js';
import { layersOfDevConfig } from '../backstore/registry.js';
import type { Backstore, ControlContext, ControlResult } from '../backstore/types.js';

/** What of a served LUN an online operation needs (src/daemon/lun.ts Lun). */
export interface ControlledLun {
  readonly id: string;
  readonly log: Logger;
  /** The current dev_config is in the status (a RECONFIG may have changed it since the device appeared). */
  status(): { devConfig: string };
  quiesced<T>(fn: () => Promise<T>, opts?: { mediumChanged?: boolean }): Promise<T>;
  /** Run `fn` beside the LUN's I/O with layer `index` (bottom first) as its handler opened it (lun.ts). */
  besideIo<T>(index: number, fn: (layer: Backstore | undefined, signal: AbortSignal) => Promise<T>): Promise<T>;
}

export async function runLunControl(
  lun: ControlledLun,
  op: string,
  rawArgs: Readonly<Record<string, unknown>>,
  files: FileOpener,
): Promise<ControlResult> {
  if (!splitOperationName(op)) {
    throw Object.assign(new Error(`control operation ${JSON.stringify(op.slice(0, 80))} is not <group>.<verb> (e.g. snapshot.create)`), { code: 'EINVAL' });
  }
  // Parsed as the LUN's own open parses it, so the search sees the layers that are open.
  const layers = layersOfDevConfig(lun.status().devConfig);
  const found = await layerOperation(layers, op, `LUN ${lun.id}`, files);
  const args = coerceControlArgs(found.operation, rawArgs);
  const ctx: ControlContext = {
    mode: 'online',
    config: found.layer.config,
    options: { ...found.layer.options },
    files,
    log: lun.log.child({ control: op, handler: found.handler.name }),
  };
  if (found.operation.quiesce === false) {
    // Beside I/O: the operation gets the open layer, and a signal that fires before that layer closes.
    return lun.besideIo(found.index, (live, signal) => found.operation.run({ ...ctx, live, signal }, args));
  }
  return lun.quiesced(() => found.operation.run(ctx, args), { mediumChanged: found.operation.changesMedium !== false });
}
