/**
 * The daemon's configuration file (TOML). Every error names the key and the
 * reason; unknown keys are errors too (a typo must not silently become a
 * default). Example in README.md ("Configuration").
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { ConfigError } from '../backstore/config-error.js';
import { type DevLayer, formatDevConfig, parseDevConfig } from '../backstore/dev-config.js';
import { checkPositiveSize } from './size.js';
import { COMPLETION_AFFINITIES, type CompletionAffinity } from '../lio/export.js';
import { quoteForError, validateIscsiName, validateKeyName, validateLunName, validatePortal } from './names.js';
import { DEFAULT_KEY_DIR } from './chap-keys.js';

export interface LunConfig {
  name: string;
  /**
   * As written: a handler name (file, ram, qcow2, or a user handler) used
   * with `path` and `options`, or a whole stack string, top first
   * (`crypt/;key=k1>qcow2//srv/a.qcow2`).
   */
  backstore: string;
  /** Handler config string: the image path for file/qcow2 ('' with a stack string). */
  path: string;
  size: number;
  blockSize: 512 | 4096;
  /** Handler options ({} with a stack string: each layer carries its own). */
  options: Record<string, string>;
  /** The dev_config the LUN is created with, checked by the one dev_config parser. */
  devConfig: string;
  /** Its layers, top first (one for a plain handler). */
  layers: DevLayer[];
  export: 'none' | 'loop' | 'iscsi';
  iqn?: string;
  /** iSCSI: where the target listens, as the admin wrote it (there is no default). */
  portal?: string;
  /** iSCSI: initiator IQNs allowed to log in, or 'any' (demo mode) when the admin wrote so. */
  initiators: string[] | 'any';
  /** iSCSI: name of the CHAP key file in the key directory (the secret itself is never in the config). */
  chap?: string;
  /** Where LIO completes commands of the export's target (see lio.ts); unset: the fabric's default. */
  completionAffinity?: CompletionAffinity;
}

export interface DaemonConfig {
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /** Also the single-instance guard, so it cannot be turned off. */
  controlSocket: string;
  /** Where CHAP key files live (see chap-keys.ts). */
  keyDir: string;
  /** Backing files must live under one of these directories (empty: no restriction). */
  allowedDirs: string[];
  /** User handler modules by subtype name. */
  handlers: Record<string, string>;
  luns: LunConfig[];
}

export const DEFAULT_CONFIG: DaemonConfig = {
  logLevel: 'info',
  controlSocket: '/run/tcmu-ts/control.sock',
  keyDir: DEFAULT_KEY_DIR,
  allowedDirs: [],
  handlers: {},
  luns: [],
};

type Table = Record<string, unknown>;

/**
 * Every refusal of a config is the core's one ConfigError (`code` ECONFIG),
 * made by ConfigError.at: the message names the file, the key (or
 * line:column) and the reason.
 */
export { ConfigError };

/** A value for an error message: its TOML type and a bounded rendering (never Node's "undefined"/"NaN" spellings). */
function describe(v: unknown): string {
  if (typeof v === 'string') return `the string ${quoteForError(v)}`;
  if (typeof v === 'number') return `the number ${Number.isFinite(v) ? v : String(v).toLowerCase()}`;
  if (typeof v === 'bigint') return `the integer ${v}`;
  if (typeof v === 'boolean') return `the boolean ${v}`;
  if (v instanceof Date) return 'a date';
  if (Array.isArray(v)) return `a list of ${v.length}`;
  if (v === null || v === undefined) return 'nothing';
  return 'a table';
}

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function loadConfig(file: string): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw ConfigError.at(file, '(file)', `cannot be read (${code})`);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file = 'config'): DaemonConfig {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    // The parser's message is about syntax (no key exists yet): the location is line:column.
    if (err instanceof TomlError) throw ConfigError.at(`${file}:${err.line}:${err.column}`, 'TOML syntax', err.message.split('\n')[0]!);
    throw ConfigError.at(file, 'TOML syntax', 'the parser gave up on this file');
  }
  const fail = (key: string, reason: string): never => {
    throw ConfigError.at(file, key, reason);
  };
  const known = (table: Table, prefix: string, keys: string[]) => {
    for (const k of Object.keys(table)) {
      if (!keys.includes(k)) fail(`${prefix}${/^[A-Za-z0-9_-]{1,64}$/.test(k) ? k : quoteForError(k)}`, `unknown key (known: ${keys.join(', ')})`);
    }
  };
  const str = (v: unknown, key: string): string => (typeof v === 'string' ? v : fail(key, `expected a string, got ${describe(v)}`));
  const strList = (v: unknown, key: string): string[] =>
    Array.isArray(v) ? v.map((x, i) => str(x, `${key}[${i}]`)) : fail(key, 'expected a list of strings');

  known(doc, '', ['daemon', 'lun']);
  const config: DaemonConfig = { ...DEFAULT_CONFIG, luns: [], handlers: {}, allowedDirs: [] };

  const daemon = doc.daemon ?? {};
  if (!isTable(daemon)) fail('daemon', 'expected a table');
  const d = daemon as Table;
  known(d, 'daemon.', ['log_level', 'control_socket', 'key_dir', 'allowed_dirs', 'handlers']);
  if (d.log_level !== undefined) {
    const level = str(d.log_level, 'daemon.log_level');
    const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
    if (!levels.includes(level)) fail('daemon.log_level', `"${level}" is not one of ${levels.join(', ')}`);
    config.logLevel = level as DaemonConfig['logLevel'];
  }
  if (d.control_socket !== undefined) {
    const path = str(d.control_socket, 'daemon.control_socket');
    if (path === '') {
      fail('daemon.control_socket', 'cannot be empty: the control socket is also what keeps a second daemon from serving the same LUNs; leave the key out for /run/tcmu-ts/control.sock');
    }
    if (!isAbsolute(path)) fail('daemon.control_socket', `${quoteForError(path)} is not an absolute path`);
    config.controlSocket = path;
  }
  if (d.key_dir !== undefined) {
    const dir = str(d.key_dir, 'daemon.key_dir');
    if (!isAbsolute(dir)) fail('daemon.key_dir', `${quoteForError(dir)} is not an absolute path`);
    config.keyDir = dir;
  }
  if (d.allowed_dirs !== undefined) {
    config.allowedDirs = strList(d.allowed_dirs, 'daemon.allowed_dirs');
    config.allowedDirs.forEach((dir, i) => isAbsolute(dir) || fail(`daemon.allowed_dirs[${i}]`, `${quoteForError(dir)} is not an absolute path`));
  }
  if (d.handlers !== undefined) {
    if (!isTable(d.handlers)) fail('daemon.handlers', 'expected a table of name = "module path or package"');
    for (const [name, mod] of Object.entries(d.handlers as Table)) config.handlers[name] = str(mod, `daemon.handlers.${name}`);
  }

  const luns = doc.lun ?? {};
  if (!isTable(luns)) fail('lun', 'expected tables [lun.<name>]');
  for (const [name, raw] of Object.entries(luns as Table)) {
    const p = `lun.${name}.`;
    try {
      validateLunName(name);
    } catch (err) {
      fail(`lun.${quoteForError(name)}`, (err as Error).message);
    }
    if (!isTable(raw)) fail(`lun.${name}`, 'expected a table');
    const t = raw as Table;
    known(t, p, ['backstore', 'path', 'size', 'block_size', 'options', 'export', 'iqn', 'portal', 'initiators', 'chap', 'completion_affinity']);
    const backstore =
      t.backstore === undefined ? fail(`${p}backstore`, 'missing (file, ram, qcow2, a user handler, or a stack such as "crypt/;key=k1>file//srv/a.img")') : str(t.backstore, `${p}backstore`);
    const path = t.path === undefined ? '' : str(t.path, `${p}path`);
    const stacked = isStackString(backstore);
    if (stacked) {
      for (const k of ['path', 'options']) {
        if (t[k] !== undefined) fail(`${p}${k}`, `not allowed when backstore is a stack string: write the ${k === 'path' ? 'path after its handler (file//srv/a.img)' : 'options after their layer (;key=value)'} in backstore`);
      }
    } else if (backstore !== 'ram' && !isAbsolute(path)) fail(`${p}path`, path ? `"${path}" is not an absolute path` : 'missing');
    if (t.size === undefined) fail(`${p}size`, 'missing');
    if (typeof t.size !== 'string' && typeof t.size !== 'number') fail(`${p}size`, `expected a size like "10G" or a byte count, got ${describe(t.size)}`);
    if (typeof t.size === 'number' && !Number.isSafeInteger(t.size)) fail(`${p}size`, `expected a positive integer byte count, got ${describe(t.size)}`);
    const checkedSize = checkPositiveSize(t.size as string | number);
    const size = 'reason' in checkedSize ? fail(`${p}size`, checkedSize.reason) : checkedSize.bytes;
    const blockSize = t.block_size === undefined ? 512 : t.block_size;
    if (blockSize !== 512 && blockSize !== 4096) fail(`${p}block_size`, `must be 512 or 4096, got ${describe(blockSize)}`);
    if (size % (blockSize as number) !== 0) fail(`${p}size`, `${size} is not a multiple of block_size ${blockSize}`);
    const options: Record<string, string> = {};
    if (t.options !== undefined) {
      if (!isTable(t.options)) fail(`${p}options`, 'expected a table of key = "value"');
      for (const [k, v] of Object.entries(t.options as Table)) {
        if (typeof v === 'number' && !Number.isFinite(v)) fail(`${p}options.${k}`, `expected a finite number, got ${describe(v)}`);
        options[k] = typeof v === 'number' || typeof v === 'boolean' ? String(v) : str(v, `${p}options.${k}`);
      }
    }
    const exp = t.export === undefined ? 'none' : str(t.export, `${p}export`);
    if (!['none', 'loop', 'iscsi'].includes(exp)) fail(`${p}export`, `${quoteForError(exp)} is not one of none, loop, iscsi`);
    if (exp !== 'iscsi') for (const k of ['iqn', 'portal', 'initiators', 'chap']) if (t[k] !== undefined) fail(`${p}${k}`, 'only valid with export = "iscsi"');
    const iscsi = exp === 'iscsi' ? parseIscsiKeys(t, p, fail, str, strList) : { initiators: [] as string[] };
    let completionAffinity: CompletionAffinity | undefined;
    if (t.completion_affinity !== undefined) {
      if (exp === 'none') fail(`${p}completion_affinity`, 'only valid with export = "loop" or "iscsi"');
      const value = str(t.completion_affinity, `${p}completion_affinity`);
      if (!(COMPLETION_AFFINITIES as readonly string[]).includes(value)) {
        fail(`${p}completion_affinity`, `"${value}" is not one of ${COMPLETION_AFFINITIES.join(', ')}`);
      }
      completionAffinity = value as CompletionAffinity;
    }
    const { devConfig, layers } = stacked ? stackOf(backstore, p, fail) : singleLayerOf(backstore, path, options, p, fail);
    config.luns.push({
      name,
      backstore,
      path,
      size,
      blockSize: blockSize as 512 | 4096,
      options,
      devConfig,
      layers,
      export: exp as LunConfig['export'],
      ...iscsi,
      completionAffinity,
    });
  }
  return config;
}

type Fail = (key: string, reason: string) => never;

/** A `backstore` value that is a whole dev_config (it has the '/' after a handler name) rather than a handler name. */
function isStackString(backstore: string): boolean {
  return backstore.includes('/');
}

/** The reason of a ConfigError from the dev_config parser, for `fail(key, reason)`. */
function reasonOf(err: unknown): string {
  if (err instanceof ConfigError) return err.message;
  throw err;
}

/**
 * `backstore = "crypt/;key=k1>qcow2//srv/a.qcow2"`: parsed by the one
 * dev_config parser; the bottom layer, unless ram, must name an absolute path.
 */
function stackOf(backstore: string, p: string, fail: Fail): { devConfig: string; layers: DevLayer[] } {
  let layers: DevLayer[] = [];
  try {
    layers = parseDevConfig(backstore).layers;
  } catch (err) {
    fail(`${p}backstore`, reasonOf(err));
  }
  const bottom = layers[layers.length - 1]!;
  if (bottom.handler !== 'ram' && !isAbsolute(bottom.config)) {
    fail(`${p}backstore`, `the bottom layer (${bottom.handler}) needs an absolute path, e.g. "${bottom.handler}//srv/a.img", not ${quoteForError(bottom.config)}`);
  }
  return { devConfig: backstore, layers };
}

/** `backstore = "file"` with `path` and `options`: each part checked against what a dev_config can carry, under its own key. */
function singleLayerOf(
  backstore: string,
  path: string,
  options: Record<string, string>,
  p: string,
  fail: Fail,
): { devConfig: string; layers: DevLayer[] } {
  const check = (key: string, format: () => unknown) => {
    try {
      format();
    } catch (err) {
      fail(key, reasonOf(err));
    }
  };
  check(`${p}backstore`, () => formatDevConfig(backstore, ''));
  check(`${p}path`, () => formatDevConfig(backstore, path));
  for (const [k, v] of Object.entries(options)) check(`${p}options.${k}`, () => formatDevConfig(backstore, '', { [k]: v }));
  let devConfig = '';
  check(`${p}backstore`, () => (devConfig = formatDevConfig(backstore, path, options)));
  return { devConfig, layers: parseDevConfig(devConfig).layers };
}

/**
 * The keys of an iSCSI export. Nothing here has a default that opens the LUN:
 * who may log in (`initiators`, a list of IQNs or the explicit "any") and
 * where the target listens (`portal`) must be written down; configs written
 * for the old defaults (any initiator on 0.0.0.0:3260) get an error saying
 * what to add.
 */
function parseIscsiKeys(
  t: Table,
  p: string,
  fail: Fail,
  str: (v: unknown, key: string) => string,
  strList: (v: unknown, key: string) => string[],
): Pick<LunConfig, 'iqn' | 'portal' | 'initiators' | 'chap'> {
  const check = (key: string, validate: () => void) => {
    try {
      validate();
    } catch (err) {
      fail(key, (err as Error).message);
    }
  };
  let initiators: string[] | 'any';
  if (t.initiators === undefined) {
    fail(
      `${p}initiators`,
      'missing: an iSCSI export no longer admits every host by default; list who may log in (initiators = ["iqn.1993-08.org.debian:01:host1"]) or write initiators = "any" for the old behaviour',
    );
  }
  if (typeof t.initiators === 'string') {
    if (t.initiators !== 'any') fail(`${p}initiators`, `${quoteForError(t.initiators)}: expected a list of initiator IQNs or the string "any"`);
    initiators = 'any';
  } else {
    initiators = strList(t.initiators, `${p}initiators`);
    if (initiators.length === 0) fail(`${p}initiators`, 'an empty list lets no initiator log in; list IQNs or write initiators = "any"');
    initiators.forEach((iqn, i) => check(`${p}initiators[${i}]`, () => validateIscsiName('initiator', iqn)));
    const dup = initiators.find((iqn, i) => initiators.indexOf(iqn) !== i);
    if (dup !== undefined) fail(`${p}initiators`, `${quoteForError(dup)} is listed twice`);
  }
  if (t.portal === undefined) {
    fail(
      `${p}portal`,
      'missing: write the address the target listens on, e.g. portal = "192.0.2.10:3260" (or "0.0.0.0:3260" for every address, the old default)',
    );
  }
  const portal = str(t.portal, `${p}portal`);
  check(`${p}portal`, () => validatePortal('portal', portal));
  const iqn = t.iqn === undefined ? undefined : str(t.iqn, `${p}iqn`);
  if (iqn !== undefined) check(`${p}iqn`, () => validateIscsiName('target name', iqn));
  const chap = t.chap === undefined ? undefined : str(t.chap, `${p}chap`);
  if (chap !== undefined) check(`${p}chap`, () => validateKeyName(chap));
  return { iqn, portal, initiators, chap };
}
