/**
 * The daemon's D-Bus service, assembled: the handlers it serves, each with
 * a CheckConfig that runs the enable-time validation through an opener
 * confined exactly like the LUNs' (same allowed_dirs).
 */
import type { Logger } from 'pino';
import { createFileOpener } from '../backstore/confine.js';
import { checkDevConfig } from './check-config.js';
import { startDbusService, type DbusService } from './dbus-service.js';
import { describeHandlers } from './handler-info.js';

export interface TargetcliServiceOptions {
  log: Logger;
  subtypes: ReadonlySet<string>;
  allowedDirs: readonly string[];
  /** A bus address instead of the system bus (tests). */
  busAddress?: string;
}

export async function startTargetcliService(opts: TargetcliServiceOptions): Promise<DbusService | undefined> {
  const files = createFileOpener(opts.allowedDirs);
  const log = opts.log;
  return startDbusService({
    log,
    handlers: await describeHandlers(opts.subtypes, files),
    check: (devConfig, subtype) => checkDevConfig(devConfig, { files, log, subtype }),
    busAddress: opts.busAddress,
  });
}
