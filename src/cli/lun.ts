/**
 * `tcmu-ts lun create|delete|list|export|unexport` and `tcmu-ts status`:
 * LIO management without targetcli. These talk to configfs directly; the
 * running daemon picks devices up through netlink.
 */
import type { Command } from 'commander';
import {
  checkLioAvailable,
  createTcmuDevice,
  deleteTcmuDevice,
  exportIscsi,
  exportLoop,
  listTcmuLuns,
  parseCompletionAffinity,
  unexport,
} from '../lio/export.js';
import { parseSize } from '../config/size.js';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '../daemon/control.js';
import { ConfigError } from '../backstore/config-error.js';
import { type DevLayerInput, formatDevStack, parseDevConfig } from '../backstore/dev-config.js';
import { DEFAULT_KEY_DIR, readChapKey } from '../config/chap-keys.js';
import { quoteForError, validateCryptKeyName, validateLunName } from '../config/names.js';
import type { IscsiExportOptions } from '../lio/export.js';

function parseOptions(list: string[] | undefined): Record<string, string> {
  const options: Record<string, string> = {};
  for (const kv of list ?? []) {
    const eq = kv.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--option "${kv}": expected key=value`);
    options[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return options;
}

/** The LUKS versions `--encrypt` names (as `tcmu-ts image create --encrypt`). */
export const ENCRYPTION_FORMATS = ['luks2', 'luks1'] as const;

export interface BackstoreCliOptions {
  /** A handler name, or a whole stack string top first (`crypt/;key=k1>file//srv/a.img`). */
  backstore: string;
  path?: string;
  option?: string[];
  encrypt?: string;
  key?: string;
  /** `--compress zlib|zstd`: the qcow2 layer's compress= option. */
  compress?: string;
}

/**
 * The dev_config `lun create` writes, built and checked by the one
 * dev_config formatter. `--backstore` is a handler (with `--path` and
 * `--option`) or a stack string; `--encrypt luks2|luks1 --key NAME` puts
 * `crypt/;key=NAME` on top of either. The LUKS version is read from the
 * image's header when the LUN opens (make the image with `tcmu-ts image
 * create --encrypt`); the flag takes the same words so both commands read
 * alike. Exported for tests.
 */
export function devConfigFromCli(o: BackstoreCliOptions): string {
  const stacked = o.backstore.includes('/');
  let layers: DevLayerInput[];
  if (stacked) {
    if (o.path) throw new ConfigError('--path cannot be combined with a stack in --backstore: write the path after its handler (file//srv/a.img)');
    if (o.option?.length) throw new ConfigError('--option cannot be combined with a stack in --backstore: write options after their layer (;key=value)');
    layers = parseDevConfig(o.backstore).layers;
  } else {
    layers = [{ handler: o.backstore, config: o.path ?? '', options: parseOptions(o.option) }];
  }
  if (o.compress !== undefined) {
    if (o.compress !== 'zlib' && o.compress !== 'zstd') throw new ConfigError(`--compress ${quoteForError(o.compress)}: expected zlib or zstd`);
    const qcow2 = layers.filter((l) => l.handler === 'qcow2');
    if (qcow2.length !== 1) throw new ConfigError('--compress needs exactly one qcow2 layer (--backstore qcow2 --path IMAGE)');
    qcow2[0]!.options = { ...qcow2[0]!.options, compress: o.compress };
  }
  if (o.encrypt !== undefined || o.key !== undefined) {
    if (o.encrypt === undefined) throw new ConfigError('--key needs --encrypt luks2 or --encrypt luks1');
    if (!(ENCRYPTION_FORMATS as readonly string[]).includes(o.encrypt)) {
      throw new ConfigError(`--encrypt ${quoteForError(o.encrypt)}: expected ${ENCRYPTION_FORMATS.join(' or ')}`);
    }
    if (o.key === undefined) throw new ConfigError("--encrypt needs --key NAME (the name of a key in the daemon's key directory)");
    try {
      validateCryptKeyName(o.key);
    } catch (err) {
      throw new ConfigError(`--key: ${(err as Error).message}`);
    }
    layers = [{ handler: 'crypt', config: '', options: { key: o.key } }, ...layers];
  }
  return formatDevStack(layers);
}

const collect = (value: string, previous: string[] = []) => [...previous, value];

const AFFINITY_HELP =
  'where LIO runs completion work: current (the CPU that completed the command, for TCMU the runner\'s; default on loop) or submitter (the kernel default; default on iscsi)';
const affinityOption = (value: string) => parseCompletionAffinity(value, '--completion-affinity');

interface IscsiCliOptions {
  iqn?: string;
  portal?: string;
  initiator?: string[];
  chap?: string;
  keyDir: string;
  completionAffinity?: IscsiExportOptions['completionAffinity'];
}

/**
 * The iSCSI export as the admin wrote it on the command line: the same rules
 * as the config file (who may log in and where the target listens must be
 * given; "any" only when written). Exported for tests.
 */
export function iscsiExportOptions(o: IscsiCliOptions): IscsiExportOptions {
  const initiators = o.initiator ?? [];
  if (initiators.length === 0) {
    throw new Error('--initiator is required for iSCSI: give the initiator IQNs allowed to log in (repeatable), or --initiator any to admit every host');
  }
  if (initiators.includes('any') && initiators.length > 1) throw new Error('--initiator any cannot be combined with initiator IQNs');
  if (!o.portal) throw new Error('--portal is required for iSCSI: the address to listen on, e.g. --portal 192.0.2.10:3260 (0.0.0.0:3260 for every address)');
  return {
    iqn: o.iqn,
    portal: o.portal,
    initiators: initiators[0] === 'any' ? 'any' : initiators,
    chap: o.chap === undefined ? undefined : readChapKey(o.keyDir, o.chap),
    completionAffinity: o.completionAffinity,
  };
}

/** The iSCSI options shared by `lun create --export iscsi` and `lun export --fabric iscsi`. */
function addIscsiOptions(cmd: Command): Command {
  return cmd
    .option('--iqn <iqn>', 'iSCSI target name (default iqn.2026-11.io.tcmu-ts:<name>)')
    .option('--portal <ip:port>', 'iSCSI: the address the target listens on (required; 0.0.0.0:3260 = every address)')
    .option('--initiator <iqn|any>', 'iSCSI: initiator allowed to log in (repeatable; required; "any" admits every host)', collect)
    .option('--chap <name>', 'iSCSI: require CHAP with the credentials in <key-dir>/<name> (see docs/ADMIN.md)')
    .option('--key-dir <dir>', 'directory of CHAP key files', DEFAULT_KEY_DIR);
}

export function registerLun(program: Command): void {
  const lun = program.command('lun').description('create, export, list and delete TCMU LUNs in the kernel (configfs)');

  addIscsiOptions(lun
    .command('create <name>'))
    .description('create a TCMU device served by tcmu-ts (the daemon should be running)')
    .requiredOption('--backstore <subtype|stack>', 'handler (file, ram, qcow2 or a user handler), or a stack top first: "crypt/;key=k1>file//srv/a.img"')
    .option('--path <path>', 'backing image (file, qcow2; not with a stack)', '')
    .requiredOption('--size <size>', 'LUN size, e.g. 10G')
    .option('--block-size <n>', 'logical block size (512 or 4096)', '512')
    .option('--max-sectors <n>', 'largest transfer in blocks (default: 1 MiB, at least 1024 blocks)')
    .option('--cmd-timeout <s>', 'seconds before the kernel fails an unanswered command', '30')
    .option('--option <key=value>', 'handler option (repeatable; not with a stack)', collect)
    .option('--encrypt <luks2|luks1>', 'put a LUKS layer on top (crypt/;key=NAME); needs --key')
    .option('--key <name>', "with --encrypt: the key's name in the daemon's key directory")
    .option('--no-netlink-reply', 'do not make the kernel wait for the runner (needed next to tcmu-runner 1.5)')
    .option('--compress <zlib|zstd>', 'qcow2: store writes compressed (compress= option; the image needs that compression_type)')
    .option('--export <fabric>', 'also export: loop or iscsi')
    .option('--completion-affinity <where>', AFFINITY_HELP, affinityOption)
    .action(async (name: string, o) => {
      validateLunName(name);
      // Check the export's options before anything is made in the kernel.
      const iscsi = o.export === 'iscsi' ? iscsiExportOptions(o) : undefined;
      if (o.export && o.export !== 'loop' && o.export !== 'iscsi') throw new Error(`--export ${o.export}: expected loop or iscsi`);
      const devConfig = devConfigFromCli(o);
      await checkLioAvailable();
      const dir = await createTcmuDevice({
        name,
        devConfig,
        size: parseSize(o.size, '--size'),
        blockSize: Number(o.blockSize),
        maxSectors: o.maxSectors === undefined ? undefined : Number(o.maxSectors),
        cmdTimeOut: Number(o.cmdTimeout),
        netlinkReply: o.netlinkReply,
      });
      console.log(`created ${dir} (dev_config=${devConfig})`);
      const completionAffinity = o.completionAffinity;
      if (o.export === 'loop') console.log(`exported on tcm_loop ${await exportLoop(name, { completionAffinity })}`);
      else if (iscsi) console.log(`exported on iSCSI ${await exportIscsi(name, iscsi)} at ${iscsi.portal}`);
    });

  addIscsiOptions(lun
    .command('export <name>')
    .description('export a LUN on tcm_loop (local /dev/sdX) or iSCSI')
    .requiredOption('--fabric <fabric>', 'loop or iscsi'))
    .option('--completion-affinity <where>', AFFINITY_HELP, affinityOption)
    .action(async (name: string, o) => {
      validateLunName(name);
      const completionAffinity = o.completionAffinity;
      if (o.fabric === 'loop') {
        await checkLioAvailable();
        console.log(await exportLoop(name, { completionAffinity }));
      } else if (o.fabric === 'iscsi') {
        const iscsi = iscsiExportOptions(o);
        await checkLioAvailable();
        console.log(await exportIscsi(name, iscsi));
      } else throw new Error(`--fabric ${o.fabric}: expected loop or iscsi`);
    });

  lun
    .command('unexport <name>')
    .description('remove every export of a LUN')
    .action(async (name: string) => {
      validateLunName(name);
      await checkLioAvailable();
      await unexport(name);
    });

  lun
    .command('delete <name>')
    .description('unexport and remove a LUN (its backing image is kept)')
    .action(async (name: string) => {
      validateLunName(name);
      await checkLioAvailable();
      await deleteTcmuDevice(name);
      console.log(`deleted ${name}`);
    });

  lun
    .command('list')
    .description('list TCMU LUNs in the kernel')
    .option('--json', 'machine-readable output')
    .action(async (o: { json?: boolean }) => {
      await checkLioAvailable();
      const luns = await listTcmuLuns();
      if (o.json) return console.log(JSON.stringify(luns, null, 2));
      for (const l of luns) {
        console.log(
          `${l.name.padEnd(20)} user_${l.hbaIndex}  ${String(l.size).padStart(15)}  ${l.enabled ? 'enabled ' : 'disabled'}  ${l.devConfig}  ${l.exports.length} export(s)`,
        );
      }
    });

  program
    .command('status')
    .description('show what the running daemon serves: LUNs, queue depth, in-flight and error counters')
    .option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET)
    .option('--json', 'machine-readable output')
    .option('--space', "also each image's space: allocated bytes, compressed clusters, compression ratio (qcow2; reads the image's tables)")
    .action(async (o: { socket: string; json?: boolean; space?: boolean }) => {
      let status: { pid: number; luns: any[] };
      try {
        status = await controlRequest(o.socket, { cmd: 'status', ...(o.space ? { space: true } : {}) }, o.space ? 120_000 : undefined);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT' || code === 'ECONNREFUSED') throw new Error(`no tcmu-ts daemon is running (${o.socket})`);
        throw err;
      }
      if (o.json) return console.log(JSON.stringify(status, null, 2));
      console.log(`tcmu-ts daemon pid ${status.pid}, ${status.luns.length} LUN(s)`);
      console.log('LUN                   state     size            in-flight peak  commands    errors  stuck  dev_config');
      for (const l of status.luns) {
        const s = l.stats ?? {};
        console.log(
          `${l.id.padEnd(21)} ${l.state.padEnd(9)} ${String(l.size).padEnd(15)} ${String(s.inFlight ?? 0).padStart(9)}  ${String(s.maxInFlight ?? 0).padStart(3)}  ${String(s.commands ?? 0).padStart(10)}  ${String(s.errors ?? 0).padStart(6)}  ${String(l.stuckEvents ?? 0).padStart(5)}  ${l.devConfig}`,
        );
      }
      if (!o.space) return;
      const withSpace = status.luns.filter((l) => l.space);
      console.log('');
      if (withSpace.length === 0) return console.log('no served LUN describes its space (only qcow2 layers do)');
      console.log('LUN                   logical         allocated       compressed clusters  uncompressed  ratio');
      for (const l of withSpace) {
        const sp = l.space;
        console.log(
          `${l.id.padEnd(21)} ${String(sp.logicalSize).padEnd(15)} ${String(sp.allocatedSize).padEnd(15)} ${String(sp.compressedClusters).padStart(19)}  ${String(sp.uncompressedClusters).padStart(12)}  ${sp.compressionRatio}`,
        );
      }
      for (const l of withSpace) {
        const a = l.space.autoCompaction;
        if (!a) continue;
        const last = a.last
          ? `; last (${a.last.kind}) ${a.last.finishedAt}: compressed ${a.last.recompressedClusters} staged, moved ${a.last.movedClusters} clusters, allocated ${a.last.allocatedBefore} -> ${a.last.allocatedAfter}`
          : '';
        const state = a.running ? 'running' : `${a.stagedClusters} clusters staged uncompressed; freed ${a.freedBytes} of ${a.triggerBytes} bytes before the next full run`;
        console.log(`${l.id}: automatic compaction after ${a.idleSeconds} s quiet: ${a.runs} run(s)${last}; ${state}${a.lastError ? `; last error: ${a.lastError}` : ''}`);
      }
    });
}
