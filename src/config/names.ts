/**
 * Names that become configfs directory names or file names (LUN names, CHAP
 * key names, iSCSI IQNs) and portal addresses. One validator each, used by
 * the config file, the CLI and the control socket alike: a name that reached
 * `join(root, name)` unchecked could be `..` or contain a `/`.
 */

/** An Error with an errno-like code, so callers (and the fuzz harness) can tell a refusal from a bug. */
export class NameError extends Error {
  readonly code = 'EINVAL';
  constructor(message: string) {
    super(message);
    this.name = 'NameError';
  }
}

/** Letters, digits, '.', '_', '-'; starts with a letter or digit (so never `.`, `..`, a hidden file or an option). */
const SIMPLE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

/** A printable rendering of untrusted text for an error message (bounded, control characters escaped). */
export function quoteForError(text: string): string {
  const shown = text.length > 80 ? `${text.slice(0, 80)}…` : text;
  return JSON.stringify(shown);
}

function validateSimpleName(what: string, name: string): void {
  if (typeof name !== 'string' || !SIMPLE_NAME_RE.test(name)) {
    throw new NameError(
      `${what} ${quoteForError(String(name))} is invalid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit`,
    );
  }
}

/** A LUN name: the configfs device directory core/user_N/<name>. */
export function validateLunName(name: string): void {
  validateSimpleName('LUN name', name);
}

/** The key of an encrypted layer (`crypt/;key=NAME`): a file directly inside the key directory, as CHAP keys. */
export function validateCryptKeyName(name: string): void {
  validateSimpleName('key name', name);
}

/** A CHAP key name: a file directly inside the key directory. */
export function validateKeyName(name: string): void {
  validateSimpleName('CHAP key name', name);
}

/**
 * An iSCSI name (RFC 3720 3.2.6): iqn.YYYY-MM.reversed.domain[:anything],
 * eui.<16 hex> or naa.<16 or 32 hex>. It becomes a configfs directory name
 * (iscsi/<iqn>, acls/<initiator>), so '/' and anything outside the RFC's
 * lower-case, digit, '-', '.', ':' alphabet is refused (the kernel folds case).
 */
export function validateIscsiName(what: string, name: string): void {
  const ok =
    typeof name === 'string' &&
    name.length <= 223 &&
    (/^iqn\.\d{4}-\d{2}\.[a-z0-9][a-z0-9.-]*(:[a-z0-9.:_-]+)?$/.test(name) || /^eui\.[0-9a-f]{16}$/.test(name) || /^naa\.([0-9a-f]{16}|[0-9a-f]{32})$/.test(name));
  if (!ok) {
    throw new NameError(
      `${what} ${quoteForError(String(name))} is not an iSCSI name: expected iqn.YYYY-MM.reversed.domain[:id] (lower case), eui.<16 hex> or naa.<16|32 hex>`,
    );
  }
}

/**
 * A portal `IPv4:port` or `[IPv6]:port`, written out by the admin: the kernel
 * listens exactly there (np/<portal>). Returns the canonical configfs name.
 */
export function validatePortal(what: string, portal: string): string {
  const m = typeof portal === 'string' ? /^(?:(\d{1,3}(?:\.\d{1,3}){3})|\[([0-9A-Fa-f:.]+)\]):(\d{1,5})$/.exec(portal) : null;
  const port = m ? Number(m[3]) : 0;
  const v4ok = m?.[1] === undefined || m[1].split('.').every((o) => Number(o) <= 255 && String(Number(o)) === o);
  if (!m || !v4ok || port < 1 || port > 65535 || (m[2] !== undefined && !m[2].includes(':'))) {
    throw new NameError(
      `${what} ${quoteForError(String(portal))} is not a portal: expected IPv4:port (e.g. "192.0.2.10:3260", "0.0.0.0:3260" for every address) or [IPv6]:port`,
    );
  }
  return portal;
}
