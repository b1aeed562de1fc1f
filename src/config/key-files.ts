/**
 * Secret files in the daemon's key directory (`[daemon] key_dir`, default
 * /etc/tcmu-ts/keys): CHAP credentials (./chap-keys.ts) and LUKS passphrases
 * for crypt layers (handlers/crypt). One loader for both, so the rules are
 * the same everywhere:
 *
 * - the name is a plain file name (no '/', no '..'), the file is not a
 *   symlink and is a regular file;
 * - the directory and the file belong to root or the daemon's user and are
 *   closed to group and others (a secret anyone can read protects nothing);
 * - the size is bounded; the bytes are returned exactly as stored.
 *
 * Errors name the file and the rule broken, never its content.
 */
import { closeSync, constants, fstatSync, lstatSync, openSync, readSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { NameError } from './names.js';

export const DEFAULT_KEY_DIR = '/etc/tcmu-ts/keys';

export class KeyFileError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'KeyFileError';
  }
}

function ownerOk(uid: number): boolean {
  return uid === 0 || uid === process.getuid?.();
}

function checkPrivate(what: string, path: string, st: { uid: number; mode: number }, makeError: ErrorFactory): void {
  if (!ownerOk(st.uid)) throw makeError('EACCES', `${what} ${path} belongs to uid ${st.uid}, not root or the daemon's user`);
  if ((st.mode & 0o077) !== 0) {
    const mode = (st.mode & 0o777).toString(8).padStart(4, '0');
    throw makeError('EACCES', `${what} ${path} is open to group or others (mode ${mode}): chmod go= ${path}`);
  }
}

export type ErrorFactory = (code: string, message: string) => Error;
const defaultFactory: ErrorFactory = (code, message) => new KeyFileError(code, message);

/** Letters, digits, '.', '_', '-'; starts with a letter or digit: a file directly inside the key directory. */
const KEY_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function validateSecretName(what: string, name: string): void {
  if (typeof name !== 'string' || !KEY_NAME_RE.test(name)) {
    const shown = JSON.stringify(String(name).slice(0, 80));
    throw new NameError(`${what} ${shown} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`);
  }
}

/** Check the key directory itself (exists, absolute, not a symlink, private). */
export function checkKeyDir(keyDir: string, makeError: ErrorFactory = defaultFactory): void {
  if (!isAbsolute(keyDir)) throw makeError('EINVAL', `key directory ${keyDir} is not an absolute path`);
  let st;
  try {
    st = lstatSync(keyDir);
  } catch (err) {
    throw makeError((err as NodeJS.ErrnoException).code ?? 'EIO', `key directory ${keyDir} cannot be read (${(err as NodeJS.ErrnoException).code})`);
  }
  if (!st.isDirectory()) throw makeError('ENOTDIR', `key directory ${keyDir} is not a directory (symlinks are not followed)`);
  checkPrivate('key directory', keyDir, st, makeError);
}

export interface ReadSecretOptions {
  /** How messages call the file: 'CHAP key file', 'key file'. */
  what: string;
  /** Largest accepted file, in bytes. */
  maxBytes: number;
  makeError?: ErrorFactory;
}

/**
 * Read <keyDir>/<name> after checking name, directory and file. Returns the
 * exact bytes (no newline stripping) in a Buffer the caller must wipe with
 * fill(0) when done. `name` must have been validated by the caller's own
 * name rule (validateKeyName / validateSecretName).
 */
export function readSecretFile(keyDir: string, name: string, opts: ReadSecretOptions): Buffer {
  const makeError = opts.makeError ?? defaultFactory;
  checkKeyDir(keyDir, makeError);
  const path = join(keyDir, name);
  let fd: number;
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    const why = code === 'ENOENT' ? 'does not exist' : code === 'ELOOP' ? 'is a symlink (not followed)' : `cannot be opened (${code})`;
    throw makeError(code, `${opts.what} ${path} ${why}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw makeError('EINVAL', `${opts.what} ${path} is not a regular file`);
    checkPrivate(opts.what, path, st, makeError);
    if (st.size > opts.maxBytes) throw makeError('EFBIG', `${opts.what} ${path} is larger than ${opts.maxBytes} bytes`);
    const buf = Buffer.alloc(opts.maxBytes + 1);
    let len = 0;
    for (let n; len < buf.length && (n = readSync(fd, buf, len, buf.length - len, null)) > 0; ) len += n;
    if (len > opts.maxBytes) {
      buf.fill(0);
      throw makeError('EFBIG', `${opts.what} ${path} is larger than ${opts.maxBytes} bytes`);
    }
    const out = Buffer.from(buf.subarray(0, len));
    buf.fill(0);
    return out;
  } finally {
    closeSync(fd);
  }
}
