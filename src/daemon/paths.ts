/**
 * Backing-path helpers for the daemon. Confinement itself is not here: it
 * happens inside every open (src/backstore/confine.ts), so the path that is
 * checked is by construction the path the handler opens.
 */
import { isAbsolute } from 'node:path';
import { parseDevConfig } from '../backstore/dev-config.js';

/**
 * The path a dev_config's handler config names, if it names one (file//p,
 * qcow2//p), split by the same parser the handlers get their config from.
 * Without `handler`, the top layer's (the kernel's subtype); with it, the
 * topmost layer of that handler, so `crypt/;key=k>qcow2//srv/a.qcow2` gives
 * `/srv/a.qcow2` for 'qcow2'.
 */
export function pathOfDevConfig(devConfig: string, handler?: string): string | undefined {
  let config: string | undefined;
  try {
    const parsed = parseDevConfig(devConfig);
    config = handler === undefined ? parsed.config : parsed.layers.find((layer) => layer.handler === handler)?.config;
  } catch {
    return undefined;
  }
  return config !== undefined && isAbsolute(config) ? config : undefined;
}
