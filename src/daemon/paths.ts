/**
 * Backing-path confinement. The daemon runs as root and opens whatever a
 * dev_config names; restricting it to configured directories keeps a typo
 * or a hostile configfs write from serving /etc/shadow as a disk.
 */
import { realpathSync } from 'node:fs';
import { dirname, isAbsolute, relative, resolve } from 'node:path';

/** Resolve symlinks in the longest existing prefix (the file itself may not exist yet). */
function realpathOfExistingPrefix(path: string): string {
  let current = resolve(path);
  const rest: string[] = [];
  for (;;) {
    try {
      return resolve(realpathSync(current), ...rest.reverse());
    } catch {
      const parent = dirname(current);
      if (parent === current) return resolve(path);
      rest.push(current.slice(parent.length + (parent.endsWith('/') ? 0 : 1)));
      current = parent;
    }
  }
}

export function assertPathAllowed(path: string, allowedDirs: readonly string[]): void {
  if (allowedDirs.length === 0) return;
  if (!isAbsolute(path)) throw new Error(`backing path "${path}" must be absolute`);
  const real = realpathOfExistingPrefix(path);
  for (const dir of allowedDirs) {
    const rel = relative(realpathOfExistingPrefix(dir), real);
    if (rel === '' || (!rel.startsWith('..') && !isAbsolute(rel))) return;
  }
  throw Object.assign(
    new Error(`backing path ${path} (${real}) is outside the allowed directories: ${allowedDirs.join(', ')}`),
    { code: 'EACCES' },
  );
}

/** The path a dev_config's handler config names, if it names one (file//p, qcow2//p). */
export function pathOfDevConfig(devConfig: string): string | undefined {
  const slash = devConfig.indexOf('/');
  if (slash < 0) return undefined;
  const config = devConfig.slice(slash + 1);
  if (!config.startsWith('/')) return undefined;
  // Handler options follow the path after ';' (see src/backstore/registry.ts).
  const end = config.search(/[;?]/);
  return end < 0 ? config : config.slice(0, end);
}
