/**
 * Could `path` be created at enable time? Used by the D-Bus CheckConfig of a
 * `file//...;create=1` LUN whose image does not exist yet: the check must
 * not create it (it opens nothing for writing), so it answers the questions
 * the daemon's real, confined create would: is the path absolute, does its
 * directory exist, and does that directory lie beneath an allowed one.
 *
 * This is a check, not an open: a directory swapped for a symlink after
 * the check is still caught by the real create, which goes through the
 * confined opener (backstore/confine.ts) and cannot leave the allowed
 * directories. So comparing canonical paths here is enough.
 */
import { realpath, stat } from 'node:fs/promises';
import { basename, dirname, isAbsolute } from 'node:path';

/** Null if the file can be created where it would be; otherwise the reason it cannot. */
export async function whyNotCreatable(path: string, allowedDirs: readonly string[]): Promise<string | null> {
  if (!isAbsolute(path)) return `${path} is not an absolute path`;
  const name = basename(path);
  if (name === '' || name === '.' || name === '..' || path.endsWith('/')) return `${path} names no file`;
  const dir = dirname(path);
  let canonicalDir: string;
  try {
    canonicalDir = await realpath(dir);
    if (!(await stat(canonicalDir)).isDirectory()) return `${dir} is not a directory, so ${path} cannot be created`;
  } catch (err) {
    return `the directory of ${path} cannot be used: ${(err as Error).message}`;
  }
  if (allowedDirs.length === 0) return null;
  for (const allowed of allowedDirs) {
    let canonicalAllowed: string;
    try {
      canonicalAllowed = await realpath(allowed);
    } catch {
      continue; // a missing allowed directory holds nothing
    }
    if (canonicalDir === canonicalAllowed || canonicalDir.startsWith(canonicalAllowed.endsWith('/') ? canonicalAllowed : `${canonicalAllowed}/`)) {
      return null;
    }
  }
  return `${path}: refused, its directory ${canonicalDir} is not under any allowed directory; allowed directories: ${allowedDirs.join(', ')}`;
}
