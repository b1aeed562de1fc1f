/**
 * Path confinement: the one way any handler (and the daemon) opens a file.
 *
 * The daemon runs as root and opens whatever a dev_config, a qcow2 header
 * or a config file names. With `[daemon] allowed_dirs` set, every such open
 * must yield a file that lies beneath one of those directories. Checking a
 * path and then opening it would race (a symlink swapped in between wins),
 * so the check IS the open: the allowed directory is opened (O_PATH), and
 * the rest of the path is opened relative to it with openat2
 * RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS (native/open_beneath.cc). The
 * kernel refuses, during that one walk, any `..`, absolute symlink or
 * /proc magic link that would leave the directory; relative symlinks that
 * stay inside are fine.
 *
 * With no allowed directories the same function opens the path as given
 * (no confinement, the CLI's and tests' case), so there is one code path.
 */
import fs from 'node:fs';
import { open as openHandle, type FileHandle } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { native } from '../tcmu/native.js';

/** A refused open: the file would lie outside every allowed directory. */
export class ConfinementError extends Error {
  readonly code = 'EACCES';
  constructor(
    readonly path: string,
    readonly allowedDirs: readonly string[],
    reason: string,
    options?: { cause?: unknown },
  ) {
    super(`${path}: refused, ${reason}; allowed directories: ${allowedDirs.join(', ')}`, options);
    this.name = 'ConfinementError';
  }
}

export interface OpenFileOptions {
  /** Open read-write (default read-only). */
  write?: boolean;
  /** Create the file, failing with EEXIST if it exists (O_CREAT | O_EXCL). */
  create?: boolean;
  /** Permission bits of a created file (default 0600: LUN images hold guest data); the umask applies. */
  mode?: number;
  /**
   * A relative `path` is taken relative to this directory (a qcow2 backing
   * file relative to its image's directory, as QEMU does). Without it the
   * path must be absolute.
   */
  relativeTo?: string;
}

export interface FileOpener {
  /** The directories every opened file must lie beneath (empty: anywhere). */
  readonly allowedDirs: readonly string[];
  /** Open and return a numeric fd (the caller closes it). */
  openFd(path: string, opts?: OpenFileOptions): number;
  /** Open and return a FileHandle over exactly the confined file. */
  openHandle(path: string, opts?: OpenFileOptions): Promise<FileHandle>;
  /**
   * The canonical path of a file, read from the fd of a confined open, for
   * consumers that only take a path (import() of a handler module).
   */
  canonicalPath(path: string, opts?: OpenFileOptions): string;
  /**
   * Remove a file (a failed open's leftover that this process created):
   * the parent directory is opened confined and the name is unlinked
   * beneath that fd, so a directory swapped in meanwhile is not followed.
   */
  removeFile(path: string, opts?: Pick<OpenFileOptions, 'relativeTo'>): void;
}

export interface OpenerDeps {
  /** Use the pre-openat2 fallback even where openat2 exists (tests). */
  forceFallback?: boolean;
}

/** Path segments with empty and '.' parts dropped; '..' is kept for the kernel to judge. */
function segments(path: string): string[] {
  return path.split('/').filter((s) => s !== '' && s !== '.');
}

/** The absolute path an open is asked for, from `path` and an optional base directory. */
export function requestedPath(path: string, relativeTo?: string): string {
  if (path.includes('\0')) throw Object.assign(new Error(`path contains a NUL byte: ${JSON.stringify(path)}`), { code: 'EINVAL' });
  if (isAbsolute(path)) return path;
  if (relativeTo === undefined || !isAbsolute(relativeTo)) {
    throw Object.assign(new Error(`"${path}" is not an absolute path`), { code: 'EINVAL' });
  }
  return `${relativeTo.replace(/\/+$/, '')}/${path}`;
}

function flagsOf(opts: OpenFileOptions): number {
  const c = fs.constants;
  return (opts.write || opts.create ? c.O_RDWR : c.O_RDONLY) | (opts.create ? c.O_CREAT | c.O_EXCL : 0);
}

/** Errors from openat2 that mean "this walk would leave the directory". */
const ESCAPE_CODES = new Set(['EXDEV', 'ELOOP']);

/** Give a native errno error the path, as Node's own fs errors have. */
function withPath(err: unknown, path: string): Error {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string') return err as Error;
  return Object.assign(new Error(`${e.code}: cannot open '${path}' (${e.message})`, { cause: err }), {
    code: e.code,
    errno: e.errno,
    syscall: 'open',
    path,
  });
}

/** Spellings an allowed directory may be written in: as configured and its canonical path. */
function dirSpellings(dir: string): string[][] {
  const spellings = [segments(dir)];
  try {
    const real = segments(fs.realpathSync(dir));
    if (real.join('/') !== spellings[0]!.join('/')) spellings.push(real);
  } catch {
    // A missing allowed directory: nothing can be opened beneath it anyway.
  }
  return spellings;
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => path[i] === s);
}

export function createFileOpener(allowedDirs: readonly string[], deps: OpenerDeps = {}): FileOpener {
  const dirs = [...allowedDirs];
  const n = () => native();

  function openConfined(full: string, flags: number, mode: number): number {
    const wanted = segments(full);
    let lastEscape: unknown;
    for (const dir of dirs) {
      for (const prefix of dirSpellings(dir)) {
        if (!startsWith(wanted, prefix)) continue;
        const rest = wanted.slice(prefix.length).join('/') || '.';
        const dirFd = fs.openSync(`/${prefix.join('/')}`, n().O_PATH | fs.constants.O_DIRECTORY);
        try {
          return n().openBeneath(dirFd, rest, flags, mode, n().RESOLVE_BENEATH | n().RESOLVE_NO_MAGICLINKS, deps.forceFallback);
        } catch (err) {
          if (!ESCAPE_CODES.has((err as NodeJS.ErrnoException).code ?? '')) throw withPath(err, full);
          lastEscape = err; // a nested allowed directory may still hold it
        } finally {
          fs.closeSync(dirFd);
        }
      }
    }
    const reason = lastEscape
      ? 'it resolves outside the allowed directories (a symlink, ".." or /proc link leads out)'
      : 'it is not under any allowed directory';
    throw new ConfinementError(full, dirs, reason, { cause: lastEscape });
  }

  function openFd(path: string, opts: OpenFileOptions = {}): number {
    return openWithFlags(requestedPath(path, opts.relativeTo), flagsOf(opts), opts.mode ?? 0o600);
  }

  function openWithFlags(full: string, flags: number, mode: number): number {
    if (dirs.length === 0) {
      try {
        return n().openBeneath(n().AT_FDCWD, full, flags, mode, 0, deps.forceFallback);
      } catch (err) {
        throw withPath(err, full);
      }
    }
    return openConfined(full, flags, mode);
  }

  return {
    allowedDirs: dirs,
    openFd,
    async openHandle(path, opts = {}) {
      const fd = openFd(path, opts);
      try {
        // Node 20 cannot wrap an fd in a FileHandle; reopening through the
        // /proc magic link reaches exactly the inode the confined open found.
        const reopenFlags = flagsOf({ write: opts.write || opts.create });
        return await openHandle(`/proc/self/fd/${fd}`, reopenFlags);
      } finally {
        fs.closeSync(fd);
      }
    },
    removeFile(path, opts = {}) {
      const full = requestedPath(path, opts.relativeTo);
      const slash = full.lastIndexOf('/');
      const leaf = full.slice(slash + 1);
      if (leaf === '' || leaf === '.' || leaf === '..') {
        throw Object.assign(new Error(`cannot remove "${full}": it names no file`), { code: 'EINVAL' });
      }
      const dirFd = openWithFlags(full.slice(0, slash) || '/', n().O_PATH | fs.constants.O_DIRECTORY, 0);
      try {
        // The magic link pins the confined directory; only the last name is looked up in it.
        fs.rmSync(`/proc/self/fd/${dirFd}/${leaf}`, { force: true });
      } finally {
        fs.closeSync(dirFd);
      }
    },
    canonicalPath(path, opts = {}) {
      const fd = openFd(path, opts);
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
}

/** No confinement (the CLI, tests): the same code path with an empty allow-list. */
export const unconfinedOpener: FileOpener = createFileOpener([]);

/** The opener a handler must use: the context's, or the unconfined one when a caller gave none. */
export function openerOf(ctx: { files?: FileOpener }): FileOpener {
  return ctx.files ?? unconfinedOpener;
}
