/**
 * CHAP credentials for iSCSI exports, read from the key directory
 * (`[daemon] key_dir`, default /etc/tcmu-ts/keys). A LUN's `chap = "NAME"`
 * names the file <key_dir>/NAME, which holds
 *
 *     initiator-user:initiator-secret        # the initiator proves itself with these
 *     target-user:target-secret              # optional: mutual CHAP, the target proves itself
 *
 * (blank lines and lines starting with '#' are ignored). The directory and
 * the file must belong to root (or the daemon's user) and be closed to group
 * and others: a secret anyone can read authenticates nobody (the checks are
 * shared with LUKS key files: ./key-files.ts).
 *
 * Secrets never appear in an error, a log line or the daemon's status:
 * every message here names the file and the line, never its content.
 */
import { join } from 'node:path';
import { checkKeyDir as checkDir, DEFAULT_KEY_DIR, readSecretFile } from './key-files.js';
import { validateKeyName } from './names.js';

export { DEFAULT_KEY_DIR };

/** Larger than any sane key file; bounds what an odd file can make us read. */
const MAX_KEY_FILE = 4096;

export interface ChapCredentials {
  userid: string;
  password: string;
  /** Mutual CHAP: what the target answers with when the initiator challenges it. */
  mutual?: { userid: string; password: string };
}

export class ChapKeyError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'ChapKeyError';
  }
}

/** printable ASCII without whitespace; the user part also without ':'. */
const USERID_RE = /^[\x21-\x39\x3b-\x7e]{1,255}$/;
const SECRET_RE = /^[\x21-\x7e]{12,255}$/;

function parsePair(file: string, lineNo: number, line: string): { userid: string; password: string } {
  const colon = line.indexOf(':');
  const userid = colon < 0 ? '' : line.slice(0, colon);
  const password = colon < 0 ? '' : line.slice(colon + 1);
  if (!USERID_RE.test(userid)) {
    throw new ChapKeyError('EINVAL', `${file}:${lineNo}: expected user:secret with a user of 1-255 printable characters (no spaces, no ':')`);
  }
  if (!SECRET_RE.test(password)) {
    throw new ChapKeyError('EINVAL', `${file}:${lineNo}: the secret must be 12-255 printable characters without spaces`);
  }
  return { userid, password };
}

/** Parse a key file's text (exported for tests); `file` only labels errors. */
export function parseChapKeyFile(text: string, file: string): ChapCredentials {
  const lines: Array<[number, string]> = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/\r$/, '');
    if (line.trim() === '' || line.trimStart().startsWith('#')) return;
    lines.push([i + 1, line]);
  });
  if (lines.length === 0) throw new ChapKeyError('EINVAL', `${file}: empty; expected a line user:secret`);
  if (lines.length > 2) throw new ChapKeyError('EINVAL', `${file}:${lines[2]![0]}: at most two lines (initiator, then mutual target credentials)`);
  const creds: ChapCredentials = parsePair(file, lines[0]![0], lines[0]![1]);
  if (lines[1]) {
    creds.mutual = parsePair(file, lines[1][0], lines[1][1]);
    if (creds.mutual.password === creds.password) {
      throw new ChapKeyError('EINVAL', `${file}:${lines[1][0]}: the mutual (target) secret must differ from the initiator's`);
    }
  }
  return creds;
}

const chapError = (code: string, message: string) => new ChapKeyError(code, message);

/** Check the key directory itself (exists, private); used at startup before anything is exported. */
export function checkKeyDir(keyDir: string): void {
  checkDir(keyDir, chapError);
}

/** Read and check <keyDir>/<name>. Throws ChapKeyError (code EINVAL/EACCES/ENOENT...) naming the file, never its content. */
export function readChapKey(keyDir: string, name: string): ChapCredentials {
  validateKeyName(name);
  const bytes = readSecretFile(keyDir, name, { what: 'CHAP key file', maxBytes: MAX_KEY_FILE, makeError: chapError });
  try {
    return parseChapKeyFile(bytes.toString('latin1'), join(keyDir, name));
  } finally {
    bytes.fill(0);
  }
}
