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
 * The walk yields an O_PATH fd: nothing is really opened yet. Only a
 * regular file or a block device is then reopened, with the wanted flags,
 * through its /proc/self/fd magic link (exactly that inode; Node 20 has no
 * other way to make a FileHandle from an fd). So a FIFO never blocks the
 * daemon and a character device is never opened. Opens run on the thread
 * pool: a slow filesystem holds up only the LUN that waits for it.
 *
 * With no allowed directories the same function opens the path as given
 * (no confinement, the CLI's and tests' case), so there is one code path.
 */
import fs from 'node:fs';
import { open as openHandle, readlink, realpath, rm, type FileHandle } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { promisify } from 'node:util';
import { native } from '../native.js';

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
  openFd(path: string, opts?: OpenFileOptions): Promise<number>;
  /** Open and return a FileHandle over exactly the confined file. */
  openHandle(path: string, opts?: OpenFileOptions): Promise<FileHandle>;
  /**
   * The canonical path of a file, read from the fd of a confined open, for
   * consumers that only take a path (import() of a handler module).
   */
  canonicalPath(path: string, opts?: OpenFileOptions): Promise<string>;
  /**
   * Remove a file (a failed open's leftover that this process created):
   * the parent directory is opened confined and the name is unlinked
   * beneath that fd, so a directory swapped in meanwhile is not followed.
   */
  removeFile(path: string, opts?: Pick<OpenFileOptions, 'relativeTo'>): Promise<void>;
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
async function dirSpellings(dir: string): Promise<string[][]> {
  const spellings = [segments(dir)];
  try {
    const real = segments(await realpath(dir));
    if (real.join('/') !== spellings[0]!.join('/')) spellings.push(real);
  } catch {
    // A missing allowed directory: nothing can be opened beneath it anyway.
  }
  return spellings;
}

function startsWith(path: readonly string[], prefix: readonly string[]): boolean {
  return prefix.length <= path.length && prefix.every((s, i) => path[i] === s);
}

const fsOpen = promisify(fs.open);
const fsClose = promisify(fs.close);
const fsFstat = promisify(fs.fstat);

/**
 * What a handler may open: regular files and block devices. Anything else
 * is refused while only an O_PATH fd exists, so a FIFO never blocks the
 * open and a character device (a watchdog, a tape) is never really opened.
 */
async function assertOpenable(pathFd: number, path: string): Promise<void> {
  const st = await fsFstat(pathFd);
  if (st.isFile() || st.isBlockDevice()) return;
  const kind = st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() ? 'a character device' : st.isSocket() ? 'a socket' : 'not a file';
  const code = st.isDirectory() ? 'EISDIR' : 'EINVAL';
  throw Object.assign(new Error(`${code}: ${path} is ${kind}, not a regular file or block device; not opened`), { code, path });
}

/** The magic link that reopens exactly the file behind `fd`. */
const procFd = (fd: number) => `/proc/self/fd/${fd}`;

export function createFileOpener(allowedDirs: readonly string[], deps: OpenerDeps = {}): FileOpener {
  const dirs = [...allowedDirs];
  const n = () => native();
  const forceFallback = deps.forceFallback ?? false;

  function openBeneath(dirFd: number, rest: string, flags: number, mode: number, resolve: number): Promise<number> {
    return new Promise((resolvePromise, reject) =>
      n().openBeneath(dirFd, rest, flags, mode, resolve, forceFallback, (err, fd) => (err ? reject(err) : resolvePromise(fd!))),
    );
  }

  async function openConfined(full: string, flags: number, mode: number): Promise<number> {
    const wanted = segments(full);
    let lastEscape: unknown;
    for (const dir of dirs) {
      for (const prefix of await dirSpellings(dir)) {
        if (!startsWith(wanted, prefix)) continue;
        const rest = wanted.slice(prefix.length).join('/') || '.';
        const dirFd = await fsOpen(`/${prefix.join('/')}`, n().O_PATH | fs.constants.O_DIRECTORY);
        try {
          return await openBeneath(dirFd, rest, flags, mode, n().RESOLVE_BENEATH | n().RESOLVE_NO_MAGICLINKS);
        } catch (err) {
          if (!ESCAPE_CODES.has((err as NodeJS.ErrnoException).code ?? '')) throw withPath(err, full);
          lastEscape = err; // a nested allowed directory may still hold it
        } finally {
          await fsClose(dirFd);
        }
      }
    }
    const reason = lastEscape
      ? 'it resolves outside the allowed directories (a symlink, ".." or /proc link leads out)'
      : 'it is not under any allowed directory';
    throw new ConfinementError(full, dirs, reason, { cause: lastEscape });
  }

  /** The one open: confined beneath an allowed directory, or (none configured) as given. */
  async function openWithFlags(full: string, flags: number, mode: number): Promise<number> {
    if (dirs.length > 0) return openConfined(full, flags, mode);
    try {
      return await openBeneath(n().AT_FDCWD, full, flags, mode, 0);
    } catch (err) {
      throw withPath(err, full);
    }
  }

  /** Run `use` on an O_PATH fd of an existing, openable file; the fd is closed afterwards. */
  async function withPathFd<T>(path: string, opts: OpenFileOptions, use: (pathFd: number) => Promise<T>): Promise<T> {
    const full = requestedPath(path, opts.relativeTo);
    const pathFd = await openWithFlags(full, n().O_PATH, 0);
    try {
      await assertOpenable(pathFd, full);
      return await use(pathFd);
    } finally {
      await fsClose(pathFd);
    }
  }

  /** O_CREAT|O_EXCL cannot go through O_PATH; the new file is a regular file by construction. */
  function create(path: string, opts: OpenFileOptions): Promise<number> {
    return openWithFlags(requestedPath(path, opts.relativeTo), flagsOf(opts), opts.mode ?? 0o600);
  }

  return {
    allowedDirs: dirs,
    async openFd(path, opts = {}) {
      if (opts.create) return create(path, opts);
      return withPathFd(path, opts, (pathFd) => fsOpen(procFd(pathFd), flagsOf(opts)));
    },
    async openHandle(path, opts = {}) {
      // Node 20 cannot wrap an fd in a FileHandle; opening through the /proc
      // magic link reaches exactly the inode the confined open found.
      if (!opts.create) return withPathFd(path, opts, (pathFd) => openHandle(procFd(pathFd), flagsOf(opts)));
      const fd = await create(path, opts);
      try {
        return await openHandle(procFd(fd), flagsOf({ write: true }));
      } finally {
        await fsClose(fd);
      }
    },
    canonicalPath(path, opts = {}) {
      return withPathFd(path, opts, (pathFd) => readlink(procFd(pathFd)));
    },
    async removeFile(path, opts = {}) {
      const full = requestedPath(path, opts.relativeTo);
      const slash = full.lastIndexOf('/');
      const leaf = full.slice(slash + 1);
      if (leaf === '' || leaf === '.' || leaf === '..') {
        throw Object.assign(new Error(`cannot remove "${full}": it names no file`), { code: 'EINVAL' });
      }
      const dirFd = await openWithFlags(full.slice(0, slash) || '/', n().O_PATH | fs.constants.O_DIRECTORY, 0);
      try {
        // The magic link pins the confined directory; only the last name is looked up in it.
        await rm(`${procFd(dirFd)}/${leaf}`, { force: true });
      } finally {
        await fsClose(dirFd);
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
