/**
 * Fuzz the config loader with mutated TOML: valid configs with lines deleted,
 * duplicated, swapped or inserted, values swapped for other types, huge
 * numbers, unicode, path tricks and nested/array tables, plus occasional
 * byte-level damage. Every case must end in one of
 *   ok                      a config that passes the loader's own invariants
 *                           (ok:stack when a LUN's backstore is a stack string: its
 *                           dev_config fits configfs and round-trips through the parser)
 *   refused:ECONFIG:<key>   a ConfigError naming the key (or line:column for syntax)
 * Anything else (a raw Node error, a refusal that names no key, a message
 * with Node internals, an accepted config breaking an invariant) is a finding.
 */
import { DEV_CONFIG_MAX_LENGTH, type DevLayer, formatDevStack, parseDevConfig } from '../../../src/backstore/dev-config.js';
import { ConfigError, parseConfig, type DaemonConfig } from '../../../src/config/config.js';
import { validateIscsiName, validateKeyName, validateLunName, validatePortal } from '../../../src/config/names.js';
import { mutate } from '../lib/mutate.js';
import type { Rng } from '../lib/rng.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

const FILE = 'fuzz.toml';

const SEEDS = [
  `[daemon]
log_level = "debug"
control_socket = "/run/tcmu-ts/control.sock"
key_dir = "/etc/tcmu-ts/keys"
allowed_dirs = ["/var/lib/tcmu-ts"]
handlers = { mine = "/etc/tcmu-ts/mine.js" }

[lun.db1]
backstore = "file"
path = "/var/lib/tcmu-ts/db1.img"
size = "1G"
options = { extend = 1 }
export = "loop"
completion_affinity = "submitter"
`,
  `[lun.web]
backstore = "qcow2"
path = "/var/lib/tcmu-ts/web.qcow2"
size = 10737418240
block_size = 4096
export = "iscsi"
iqn = "iqn.2026-11.io.example:web"
portal = "192.0.2.10:3260"
initiators = ["iqn.1993-08.org.debian:01:web1", "iqn.1993-08.org.debian:01:web2"]
chap = "web-chap"

[lun.scratch]
backstore = "ram"
size = "64M"
export = "iscsi"
portal = "[::1]:3260"
initiators = "any"
`,
  `[lun.vault]
backstore = "crypt/;key=k1>qcow2//var/lib/tcmu-ts/vault.qcow2;compress=zstd"
size = "20G"
export = "loop"

[lun.plain]
backstore = "example-passthrough/>file//srv/plain.img;create=1"
size = "1.5G"
`,
  `[daemon]
log_level = "info"

[lun.a]
backstore = "ram"
size = 1048576

[lun."b-2"]
backstore = "file"
path = "/srv/b.img"
size = "512M"
export = "none"
`,
];

const VALUES = [
  '""', '"."', '".."', '"../../etc/passwd"', '"a/b"', '"any"', '"all"', '"iscsi"', '"loop"', '"fc"', '"ram"', '"file"',
  '"0.0.0.0:3260"', '"127.0.0.1:3260"', '"[::1]:3260"', '"localhost:3260"', '"1.2.3.4:99999"', '"300.1.1.1:1"',
  '"iqn.2020-01.org.example:h"', '"IQN.2020-01.ORG"', '"eui.0123456789abcdef"', '"/abs/path"', '"rel/path"',
  '"10G"', '"1.5T"', '"0"', '"-1"', '"99999999P"', '"1e30"', '"lots"', '"undefined"', '"NaN"', '"__proto__"', '"constructor"',
  '0', '-1', '1', '512', '4096', '1000', '9007199254740991', '9007199254740993', '1e308', '-1e308', '0x7fffffff', '0o777', '0b1',
  '1.5', 'inf', '-inf', 'nan', 'true', 'false', '1979-05-27', '1979-05-27T07:32:00Z', '07:32:00',
  '[]', '[""]', '["any"]', '[1, 2]', '["iqn.2020-01.a:b", "iqn.2020-01.a:b"]', '[["nested"]]', '{}', '{ a = 1 }', '{ a = { b = "c" } }',
  '"crypt/;key=k1>file//srv/a.img"', '"crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd"', '"crypt/>>file//a"', '"crypt/;key>file//a"',
  '"file//srv/a>b.img"', '">file//a"', '"a/>b/>c/>d/>e/>f/>g/>h/>i/"', '"File//a"', '"crypt/;key=k1>file/rel"', '"ram/;size=1M>ram/"',
  '"crypt/;x=1;x=2>file//a"', '"crypt/;key=a,b>file//a"', '"crypt/;key=k1>ram/"', '"file//a;create=1;Extend=1"',
  '"\\u0000"', '"é\u202e"', '"\uD83D\uDCA9"', `"${'x'.repeat(300)}"`, "'literal'", '"""multi\nline"""',
];

const KEYS = [
  'backstore', 'path', 'size', 'block_size', 'options', 'export', 'iqn', 'portal', 'initiators', 'chap', 'completion_affinity',
  'log_level', 'control_socket', 'key_dir', 'allowed_dirs', 'handlers', 'lun', 'daemon', '__proto__', 'constructor', 'toString', '"a.b"', 'é',
];

const HEADERS = ['[daemon]', '[lun]', '[[lun]]', '[lun.x]', '[lun."."]', '[lun.".."]', '[lun."a/b"]', '[lun.a.b]', '[daemon.handlers]', '[daemon.x]', '[lun.__proto__]', '[lun."é"]', '[x]', '[[daemon]]'];

/** Pieces of stack strings, for rebuilding a backstore value from separators, handlers, paths and options. */
const STACK_PIECES = ['>', ';', '/', '//', '=', ',', 'crypt/', 'file/', 'qcow2/', 'ram/', 'example-passthrough/', '/srv/a.img', ';key=k1', ';create=1', ';size=1M', 'Q', ' ', ':', '\\t', 'é'];

function randomStack(rng: Rng): string {
  return Array.from({ length: rng.between(1, 10) }, () => rng.pick(STACK_PIECES)).join('');
}

function mutateLines(rng: Rng, text: string): string {
  let lines = text.split('\n');
  const n = rng.between(1, 4);
  for (let i = 0; i < n; i++) {
    const at = rng.below(lines.length);
    const line = lines[at] ?? '';
    switch (rng.below(12)) {
      case 0: // delete a line
        lines.splice(at, 1);
        break;
      case 1: // duplicate a line (duplicate keys, duplicate tables)
        lines.splice(rng.below(lines.length + 1), 0, line);
        break;
      case 2: {
        // swap two lines (keys move into another table)
        const b = rng.below(lines.length);
        [lines[at], lines[b]] = [lines[b]!, line];
        break;
      }
      case 3:
      case 4:
      case 9:
      case 10: {
        // change a value (type changes included)
        const eq = line.indexOf('=');
        if (eq > 0) lines[at] = `${line.slice(0, eq + 1)} ${rng.pick(VALUES)}`;
        break;
      }
      case 5: // insert key = value anywhere
        lines.splice(at, 0, `${rng.pick(KEYS)} = ${rng.pick(VALUES)}`);
        break;
      case 6: // insert or replace a table header
        if (rng.chance(0.5)) lines.splice(at, 0, rng.pick(HEADERS));
        else if (line.startsWith('[')) lines[at] = rng.pick(HEADERS);
        break;
      case 7: {
        // rename a key
        const eq = line.indexOf('=');
        if (eq > 0) lines[at] = `${rng.pick(KEYS)} ${line.slice(eq)}`;
        break;
      }
      case 11: // a backstore rebuilt as a random stack string (separators, layers, options)
        lines.splice(at, line.startsWith('backstore') ? 1 : 0, `backstore = "${randomStack(rng)}"`);
        break;
      case 8: // splice unicode or control characters into a line
        lines[at] = line.slice(0, rng.below(line.length + 1)) + rng.pick(['\u0000', '\u202e', '\uFEFF', 'é', '\t', '\r', '"', "'", '\\', '#', '=', ']', '\uD800']) + line.slice(rng.below(line.length + 1));
        break;
    }
    if (lines.length === 0) lines = [''];
  }
  return lines.join('\n');
}

/** Node's internal spellings; quoted user values are cut out first (a user may legitimately write "undefined"). */
const NODE_INTERNAL = /ERR_[A-Z_]+|Cannot read propert|is not a function|is not iterable|Maximum call stack|\bundefined\b|\bNaN\b|\[object |at .*\(.*:\d+:\d+\)/;

/** The key a ConfigError names: `fuzz.toml: <key>: reason` or `fuzz.toml:L:C: TOML syntax: reason`. */
function refusalKey(message: string): string | undefined {
  const syntax = /^fuzz\.toml:\d+:\d+: TOML syntax: ./.exec(message);
  if (syntax) return 'syntax';
  const m = /^fuzz\.toml: ((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")|\[\d+\])*|\(file\)): ./s.exec(message);
  return m?.[1];
}

const CONFIG_KEYS = new Set([
  'backstore', 'path', 'size', 'block_size', 'options', 'export', 'iqn', 'portal', 'initiators', 'chap', 'completion_affinity',
  'log_level', 'control_socket', 'key_dir', 'allowed_dirs', 'handlers', 'lun', 'daemon',
]);

/** The outcome class for a key: its last plain segment ("lun.x.portal" -> "portal", "lun.\"..\"" -> "lun-name"). */
function keyClass(key: string): string {
  if (key === 'syntax' || key === 'TOML syntax') return 'syntax';
  const parts = key.replace(/\[\d+\]/g, '').split('.');
  const last = parts[parts.length - 1]!;
  if (parts[0] === 'lun' && parts.length === 2) return 'lun-name-or-table';
  return CONFIG_KEYS.has(last) ? last : 'unknown-key';
}

/** What an accepted config must satisfy, whatever the loader's path to it. */
function checkInvariants(config: DaemonConfig): void {
  const bad = (what: string) => {
    throw new FuzzFinding('accepted-invalid', what);
  };
  if (!config.controlSocket.startsWith('/')) bad(`control socket ${JSON.stringify(config.controlSocket)} accepted`);
  if (!config.keyDir.startsWith('/')) bad(`key_dir ${JSON.stringify(config.keyDir)} accepted`);
  for (const lun of config.luns) {
    try {
      validateLunName(lun.name);
      if (lun.export === 'iscsi') {
        if (lun.portal === undefined) bad(`iSCSI LUN ${lun.name} without a portal accepted`);
        validatePortal('portal', lun.portal!);
        if (lun.initiators !== 'any') {
          if (lun.initiators.length === 0) bad(`iSCSI LUN ${lun.name} with no initiators accepted`);
          lun.initiators.forEach((i) => validateIscsiName('initiator', i));
        }
        if (lun.iqn !== undefined) validateIscsiName('target', lun.iqn);
        if (lun.chap !== undefined) validateKeyName(lun.chap);
      } else if (lun.portal !== undefined || lun.chap !== undefined || lun.iqn !== undefined) {
        bad(`non-iSCSI LUN ${lun.name} with iSCSI keys accepted`);
      }
    } catch (err) {
      if (err instanceof FuzzFinding) throw err;
      bad(`accepted a value its validator refuses: ${(err as Error).message}`);
    }
    if (!Number.isSafeInteger(lun.size) || lun.size <= 0 || lun.size % lun.blockSize !== 0) bad(`LUN ${lun.name} size ${lun.size} accepted`);
    // The dev_config is what reaches the kernel: it must fit configfs and parse back to the same layers.
    if (lun.devConfig.length > DEV_CONFIG_MAX_LENGTH || lun.devConfig.includes(',')) bad(`LUN ${lun.name} dev_config ${JSON.stringify(lun.devConfig)} does not fit configfs`);
    let layers: DevLayer[] = [];
    try {
      layers = parseDevConfig(lun.devConfig).layers;
    } catch (err) {
      bad(`LUN ${lun.name} dev_config ${JSON.stringify(lun.devConfig)} does not parse: ${(err as Error).message}`);
    }
    if (JSON.stringify(layers) !== JSON.stringify(lun.layers)) bad(`LUN ${lun.name}: layers differ from its dev_config's`);
    if (formatDevStack(layers) !== lun.devConfig) bad(`LUN ${lun.name}: dev_config ${JSON.stringify(lun.devConfig)} does not round-trip`);
  }
}

const target: FuzzTarget = {
  name: 'config',
  description: 'the TOML config loader fed mutated configs (lines, values, types, tables, unicode, bytes)',
  cases: { short: 1500, long: 100000 },
  async runCase({ rng }) {
    let text = mutateLines(rng, rng.pick(SEEDS));
    if (rng.chance(0.08)) text = mutate(rng, Buffer.from(text, 'utf8'), { count: rng.between(1, 3) }).toString('utf8');
    let config: DaemonConfig;
    try {
      config = parseConfig(text, FILE);
    } catch (err) {
      if (!(err instanceof ConfigError) || err.code !== 'ECONFIG') {
        throw new FuzzFinding('raw-error', `not a ConfigError: ${(err as Error)?.name}: ${(err as Error)?.message}`);
      }
      const key = refusalKey(err.message);
      if (!key) throw new FuzzFinding('unnamed-key', `refusal names no key: ${err.message}`);
      const reason = err.message.replace(/"(?:[^"\\]|\\.)*"/g, '""');
      if (NODE_INTERNAL.test(reason)) throw new FuzzFinding('node-internals', `message leaks Node internals: ${err.message}`);
      return `refused:ECONFIG:${keyClass(key)}`;
    }
    checkInvariants(config);
    if (config.luns.some((l) => l.layers.length > 1)) return 'ok:stack';
    return config.luns.some((l) => l.export === 'iscsi') ? 'ok:iscsi' : 'ok';
  },
};

export default target;
