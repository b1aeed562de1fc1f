/**
 * Online control operations on a served LUN ('snapshot.create', ...): the
 * layer of the LUN's stack that offers the operation runs it on its own
 * config (the qcow2 layer's image path, under a crypt layer or not), with
 * the LUN quiesced (new commands held, in-flight ones finished, store
 * closed, reopened afterwards) unless the operation declares it needs no
 * quiescing. Every file it opens goes through the daemon's opener.
 */
import type { Logger } from 'pino';
import type { FileOpener } from '../backstore/confine.js';
import { coerceControlArgs, splitOperationName } from '../backstore/control.js';
import { layerOperation } from '../backstore/control-registry.js';
import { layersOfDevConfig } from '../backstore/registry.js';
import type { ControlContext, ControlResult } from '../backstore/types.js';

/** What of a served LUN an online operation needs (src/daemon/lun.ts Lun). */
export interface ControlledLun {
  readonly id: string;
  readonly log: Logger;
  /** The current dev_config is in the status (a RECONFIG may have changed it since the device appeared). */
  status(): { devConfig: string };
  quiesced<T>(fn: () => Promise<T>): Promise<T>;
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
  const run = () => found.operation.run(ctx, args);
  return found.operation.quiesce === false ? run() : lun.quiesced(run);
}
