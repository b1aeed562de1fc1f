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
 */
export function pathOfDevConfig(devConfig: string): string | undefined {
  let config: string;
  try {
    config = parseDevConfig(devConfig).config;
  } catch {
    return undefined;
  }
  return isAbsolute(config) ? config : undefined;
}
