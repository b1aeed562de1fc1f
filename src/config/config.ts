/**
 * The daemon's configuration file (TOML). Every error names the key and the
 * reason; unknown keys are errors too (a typo must not silently become a
 * default). Example in README.md ("Configuration").
 */
import { readFileSync } from 'node:fs';
import { isAbsolute } from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { parseSize } from './size.js';
import { COMPLETION_AFFINITIES, type CompletionAffinity, validateLunName } from '../tcmu/lio.js';

export interface LunConfig {
  name: string;
  /** Handler subtype: file, ram, qcow2, or a user handler name. */
  backstore: string;
  /** Handler config string: the image path for file/qcow2. */
  path: string;
  size: number;
  blockSize: 512 | 4096;
  options: Record<string, string>;
  export: 'none' | 'loop' | 'iscsi';
  iqn?: string;
  portal?: string;
  initiators: string[];
  /** Where LIO completes commands of the export's target (see lio.ts); unset: the fabric's default. */
  completionAffinity?: CompletionAffinity;
}

export interface DaemonConfig {
  logLevel: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  controlSocket: string;
  /** Backing files must live under one of these directories (empty: no restriction). */
  allowedDirs: string[];
  /** User handler modules by subtype name. */
  handlers: Record<string, string>;
  luns: LunConfig[];
}

export const DEFAULT_CONFIG: DaemonConfig = {
  logLevel: 'info',
  controlSocket: '/run/tcmu-ts/control.sock',
  allowedDirs: [],
  handlers: {},
  luns: [],
};

type Table = Record<string, unknown>;

class ConfigError extends Error {
  constructor(file: string, key: string, reason: string) {
    super(`${file}: ${key}: ${reason}`);
    this.name = 'ConfigError';
  }
}

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

export function loadConfig(file: string): DaemonConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new Error(`cannot read config ${file}: ${(err as Error).message}`);
  }
  return parseConfig(text, file);
}

export function parseConfig(text: string, file = 'config'): DaemonConfig {
  let doc: Table;
  try {
    doc = parseToml(text) as Table;
  } catch (err) {
    if (err instanceof TomlError) throw new Error(`${file}:${err.line}:${err.column}: ${err.message.split('\n')[0]}`);
    throw err;
  }
  const fail = (key: string, reason: string): never => {
    throw new ConfigError(file, key, reason);
  };
  const known = (table: Table, prefix: string, keys: string[]) => {
    for (const k of Object.keys(table)) if (!keys.includes(k)) fail(`${prefix}${k}`, `unknown key (known: ${keys.join(', ')})`);
  };
  const str = (v: unknown, key: string): string => (typeof v === 'string' ? v : fail(key, `expected a string, got ${JSON.stringify(v)}`));
  const strList = (v: unknown, key: string): string[] =>
    Array.isArray(v) ? v.map((x, i) => str(x, `${key}[${i}]`)) : fail(key, 'expected a list of strings');

  known(doc, '', ['daemon', 'lun']);
  const config: DaemonConfig = { ...DEFAULT_CONFIG, luns: [], handlers: {}, allowedDirs: [] };

  const daemon = doc.daemon ?? {};
  if (!isTable(daemon)) fail('daemon', 'expected a table');
  const d = daemon as Table;
  known(d, 'daemon.', ['log_level', 'control_socket', 'allowed_dirs', 'handlers']);
  if (d.log_level !== undefined) {
    const level = str(d.log_level, 'daemon.log_level');
    const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'];
    if (!levels.includes(level)) fail('daemon.log_level', `"${level}" is not one of ${levels.join(', ')}`);
    config.logLevel = level as DaemonConfig['logLevel'];
  }
  if (d.control_socket !== undefined) config.controlSocket = str(d.control_socket, 'daemon.control_socket');
  if (d.allowed_dirs !== undefined) {
    config.allowedDirs = strList(d.allowed_dirs, 'daemon.allowed_dirs');
    config.allowedDirs.forEach((dir, i) => isAbsolute(dir) || fail(`daemon.allowed_dirs[${i}]`, `"${dir}" is not an absolute path`));
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
      fail(`lun.${name}`, (err as Error).message);
    }
    if (!isTable(raw)) fail(`lun.${name}`, 'expected a table');
    const t = raw as Table;
    known(t, p, ['backstore', 'path', 'size', 'block_size', 'options', 'export', 'iqn', 'portal', 'initiators', 'completion_affinity']);
    const backstore = t.backstore === undefined ? fail(`${p}backstore`, 'missing (file, ram, qcow2 or a user handler)') : str(t.backstore, `${p}backstore`);
    const path = t.path === undefined ? '' : str(t.path, `${p}path`);
    if (backstore !== 'ram' && !isAbsolute(path)) fail(`${p}path`, path ? `"${path}" is not an absolute path` : 'missing');
    if (t.size === undefined) fail(`${p}size`, 'missing');
    let size = 0;
    try {
      size = parseSize(t.size as string | number, `${p}size`);
    } catch (err) {
      fail(`${p}size`, (err as Error).message.replace(`${p}size: `, ''));
    }
    const blockSize = t.block_size === undefined ? 512 : t.block_size;
    if (blockSize !== 512 && blockSize !== 4096) fail(`${p}block_size`, `must be 512 or 4096, got ${JSON.stringify(blockSize)}`);
    if (size % (blockSize as number) !== 0) fail(`${p}size`, `${size} is not a multiple of block_size ${blockSize}`);
    const options: Record<string, string> = {};
    if (t.options !== undefined) {
      if (!isTable(t.options)) fail(`${p}options`, 'expected a table of key = "value"');
      for (const [k, v] of Object.entries(t.options as Table)) {
        options[k] = typeof v === 'number' || typeof v === 'boolean' ? String(v) : str(v, `${p}options.${k}`);
      }
    }
    const exp = t.export === undefined ? 'none' : str(t.export, `${p}export`);
    if (!['none', 'loop', 'iscsi'].includes(exp)) fail(`${p}export`, `"${exp}" is not one of none, loop, iscsi`);
    if (exp !== 'iscsi') for (const k of ['iqn', 'portal', 'initiators']) if (t[k] !== undefined) fail(`${p}${k}`, 'only valid with export = "iscsi"');
    let completionAffinity: CompletionAffinity | undefined;
    if (t.completion_affinity !== undefined) {
      if (exp === 'none') fail(`${p}completion_affinity`, 'only valid with export = "loop" or "iscsi"');
      const value = str(t.completion_affinity, `${p}completion_affinity`);
      if (!(COMPLETION_AFFINITIES as readonly string[]).includes(value)) {
        fail(`${p}completion_affinity`, `"${value}" is not one of ${COMPLETION_AFFINITIES.join(', ')}`);
      }
      completionAffinity = value as CompletionAffinity;
    }
    config.luns.push({
      name,
      backstore,
      path,
      size,
      blockSize: blockSize as 512 | 4096,
      options,
      export: exp as LunConfig['export'],
      iqn: t.iqn === undefined ? undefined : str(t.iqn, `${p}iqn`),
      portal: t.portal === undefined ? undefined : str(t.portal, `${p}portal`),
      initiators: t.initiators === undefined ? [] : strList(t.initiators, `${p}initiators`),
      completionAffinity,
    });
  }
  return config;
}
