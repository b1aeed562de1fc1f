/**
 * LIO target management through configfs, so users need no targetcli:
 * TCMU devices (core/user_<hba>/<name>) and their exports on tcm_loop
 * (a local /dev/sdX) or the in-kernel iSCSI target.
 *
 * Every write that the kernel may hold until a runner answers (enable,
 * rmdir of a device, LUN links that trigger a scan) is asynchronous: when
 * the daemon itself calls these, its event loop must stay free to answer.
 */
import { mkdir, readFile, readdir, readlink, rmdir, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { basename, join } from 'node:path';
import { validateIscsiName, validateLunName, validatePortal } from '../config/names.js';
import type { ChapCredentials } from '../config/chap-keys.js';

export const CONFIGFS_TARGET = '/sys/kernel/config/target';

/**
 * The default largest transfer: 1 MiB, and never fewer than 1024 blocks.
 * Measured in the VM (scripts/bench vm-xfer, bench-vm-xfer.txt, same boot):
 * 1 MiB sequential reads at qd8 on a 512-byte-block LUN ran at 0.51x of
 * fileio with 512 KiB per command (each request split in two) and 0.55x
 * with 1 MiB (writes 0.59x and 0.63x); 2 MiB gained nothing more.
 * 4096-byte-block LUNs keep 1024 blocks (4 MiB).
 */
export function defaultMaxSectors(blockSize: number): number {
  return Math.max(1024, Math.floor((1024 * 1024) / blockSize));
}

export interface CreateDeviceOptions {
  name: string;
  devConfig: string;
  size: number;
  hbaIndex?: number;
  blockSize?: number;
  /**
   * Largest transfer in blocks; the kernel default (128) splits every 64 KiB+
   * I/O. Default: defaultMaxSectors(blockSize).
   */
  maxSectors?: number;
  /** Seconds before the kernel fails a command the runner has not answered. */
  cmdTimeOut?: number;
  /**
   * false: the kernel does not wait for a runner's netlink reply for this
   * device (nl_reply_supported=-1). Needed next to runners that answer
   * events for subtypes they do not own (tcmu-runner 1.5 refuses them).
   */
  netlinkReply?: boolean;
}

export interface LioDevice {
  name: string;
  hbaIndex: number;
  dir: string;
  devConfig: string;
  size: number;
  enabled: boolean;
  exports: string[];
}

export { validateLunName };

export function validateDevConfig(devConfig: string): void {
  if (devConfig.length === 0 || devConfig.length > 255) throw new Error('dev_config must be 1-255 characters');
  if (devConfig.includes(',')) throw new Error('dev_config cannot contain commas (configfs uses them as separators)');
  if (/\s/.test(devConfig)) throw new Error('dev_config cannot contain whitespace');
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Whether configfs and the TCMU backend are available, with the reason when not. */
export async function checkLioAvailable(root = CONFIGFS_TARGET): Promise<void> {
  if (process.getuid && process.getuid() !== 0) {
    throw new Error('tcmu-ts must run as root to manage LIO (configfs and /dev/uio*)');
  }
  if (!(await exists(join(root, 'core')))) {
    throw new Error(
      `${root}/core is missing: load the target modules (modprobe target_core_user) and mount configfs (mount -t configfs none /sys/kernel/config)`,
    );
  }
  const modules = await readFile('/proc/modules', 'utf8').catch(() => '');
  if (modules && !/^target_core_user /m.test(modules) && !(await exists('/sys/module/target_core_user'))) {
    throw new Error('kernel module target_core_user is not loaded: modprobe target_core_user');
  }
}

export async function createTcmuDevice(opts: CreateDeviceOptions, root = CONFIGFS_TARGET): Promise<string> {
  validateLunName(opts.name);
  validateDevConfig(opts.devConfig);
  if (!Number.isSafeInteger(opts.size) || opts.size <= 0) throw new Error(`size must be a positive byte count`);
  const blockSize = opts.blockSize ?? 512;
  if (opts.size % blockSize !== 0) throw new Error(`size ${opts.size} is not a multiple of the block size ${blockSize}`);
  const maxSectors = opts.maxSectors ?? defaultMaxSectors(blockSize);
  if (!Number.isSafeInteger(maxSectors) || maxSectors < 1) {
    throw new Error(`max sectors must be a positive whole number of blocks, not ${opts.maxSectors}`);
  }
  const dir = join(root, 'core', `user_${opts.hbaIndex ?? 1}`, opts.name);
  if (await exists(dir)) throw new Error(`a LUN named ${opts.name} already exists (${dir})`);
  await mkdir(dir, { recursive: true });
  try {
    const control = [
      `dev_config=${opts.devConfig}`,
      `dev_size=${opts.size}`,
      `hw_block_size=${blockSize}`,
      `hw_max_sectors=${maxSectors}`,
    ];
    if (opts.netlinkReply === false) control.push('nl_reply_supported=-1');
    for (const kv of control) await writeFile(join(dir, 'control'), kv);
    await writeFile(join(dir, 'attrib', 'cmd_time_out'), String(opts.cmdTimeOut ?? 30));
    // TMR notifications let the runner see ABORT TASK / LUN RESET (absent on old kernels).
    if (await exists(join(dir, 'attrib', 'tmr_notification'))) {
      await writeFile(join(dir, 'attrib', 'tmr_notification'), '1');
    }
    // Waits for the runner's ADDED_DEVICE_DONE when one is listening with replies on.
    await writeFile(join(dir, 'enable'), '1').catch((err: NodeJS.ErrnoException) => {
      throw Object.assign(
        new Error(
          `enabling ${opts.name} failed (${err.code}): the runner serving "${opts.devConfig.split('/')[0]}" refused the device; its log says why`,
        ),
        { code: err.code },
      );
    });
  } catch (err) {
    await rmdir(dir).catch(() => undefined);
    throw err;
  }
  return dir;
}

/** A stable NAA-style WWN (naa.5 + 15 hex digits) derived from a name. */
export function wwnFor(name: string, salt: string): string {
  const hex = createHash('sha256').update(`${salt}:${name}`).digest('hex').slice(0, 15);
  return `naa.5${hex}`;
}

async function findDeviceDir(name: string, root: string): Promise<string> {
  validateLunName(name); // the name becomes a path below core/user_N
  const core = join(root, 'core');
  for (const hba of await readdir(core).catch(() => [] as string[])) {
    if (!hba.startsWith('user_')) continue;
    const dir = join(core, hba, name);
    if (await exists(dir)) return dir;
  }
  throw new Error(`no TCMU LUN named ${name}`);
}

/**
 * Where LIO runs a command's completion work (the target's
 * `param/cmd_completion_affinity`): 'submitter' queues it on the CPU that
 * submitted the command (-1, the kernel's default); 'current' runs it on the
 * CPU that completed it (-2), which for a TCMU LUN is the runner's, because
 * the runner's kick completes the commands. On tcm_loop the submitting CPU
 * is the initiator's, busy with the application's own I/O: in the VM bed
 * 4 KiB random reads went from 0.86x to 1.04x of in-kernel fileio with
 * 'current' (same boot); 1 MiB sequential reads stayed (0.52x, 0.55x).
 */
export type CompletionAffinity = 'current' | 'submitter';

export const COMPLETION_AFFINITIES: readonly CompletionAffinity[] = ['current', 'submitter'];

const AFFINITY_VALUE: Record<CompletionAffinity, string> = { current: '-2', submitter: '-1' };

export function parseCompletionAffinity(value: string, key: string): CompletionAffinity {
  if ((COMPLETION_AFFINITIES as readonly string[]).includes(value)) return value as CompletionAffinity;
  throw new Error(`${key}: "${value}" is not one of ${COMPLETION_AFFINITIES.join(', ')}`);
}

/**
 * Set the completion affinity of a target (a WWN/IQN directory). Returns
 * false when the kernel has no such attribute (older kernels, where
 * completions always follow the submitting CPU).
 */
export async function setCompletionAffinity(targetDir: string, affinity: CompletionAffinity): Promise<boolean> {
  const attr = join(targetDir, 'param', 'cmd_completion_affinity');
  if (!(await exists(attr))) return false;
  await writeFile(attr, AFFINITY_VALUE[affinity]);
  return true;
}

/**
 * Apply the affinity to a freshly made target, before its LUN link (the
 * kernel's scan then already completes where asked). A kernel without the
 * attribute is fine unless the caller explicitly asked for 'current': then
 * the half-made target is removed and the export refused.
 */
async function applyCompletionAffinity(tpg: string, requested: CompletionAffinity | undefined, fallback?: CompletionAffinity): Promise<void> {
  const affinity = requested ?? fallback;
  if (affinity === undefined) return;
  if (await setCompletionAffinity(join(tpg, '..'), affinity)) return;
  if (requested !== 'current') return;
  // configfs drops a group's default children (lun/, param/ ...) with it.
  for (const dir of [join(tpg, 'lun', 'lun_0'), tpg, join(tpg, '..')]) await rmdir(dir).catch(() => undefined);
  throw new Error('completion affinity "current": this kernel has no cmd_completion_affinity target attribute (completions always run on the submitting CPU)');
}

export interface LoopExportOptions {
  /** Default 'current': the target is the LUN's own, and tcm_loop's submitting CPU is the application's. */
  completionAffinity?: CompletionAffinity;
}

/** Export on tcm_loop: the LUN appears locally as /dev/sdX. Returns the loopback WWN. */
export async function exportLoop(name: string, opts: LoopExportOptions = {}, root = CONFIGFS_TARGET): Promise<string> {
  const dev = await findDeviceDir(name, root);
  const wwn = wwnFor(name, 'loop-target');
  const tpg = join(root, 'loopback', wwn, 'tpgt_1');
  await mkdir(join(tpg, 'lun', 'lun_0'), { recursive: true });
  await applyCompletionAffinity(tpg, opts.completionAffinity, 'current');
  await writeFile(join(tpg, 'nexus'), wwnFor(name, 'loop-initiator'));
  // The kernel scans the LUN while creating this link: the runner must be serving it.
  await symlink(dev, join(tpg, 'lun', 'lun_0', basename(dev)));
  return wwn;
}

export interface IscsiExportOptions {
  iqn?: string;
  /** Where the target listens, e.g. "192.0.2.10:3260": required, there is no default address. */
  portal: string;
  /**
   * Initiator IQNs allowed to log in (one ACL each, LUN 0 mapped read-write),
   * or 'any': demo mode, every initiator that reaches the portal (and passes
   * CHAP when set) gets the LUN read-write. Required: nothing opens by default.
   */
  initiators: string[] | 'any';
  /** CHAP credentials every listed initiator (or, with 'any', every initiator) must present. */
  chap?: ChapCredentials;
  /** Not set: the kernel's default ('submitter'); not measured on iSCSI here. */
  completionAffinity?: CompletionAffinity;
}

/** Write CHAP credentials into an `auth/` group (an ACL's, or the TPG's for demo mode). */
async function writeChap(authDir: string, chap: ChapCredentials): Promise<void> {
  await mkdir(authDir, { recursive: true }); // configfs made it with the ACL; a no-op there
  await writeFile(join(authDir, 'userid'), chap.userid);
  await writeFile(join(authDir, 'password'), chap.password);
  if (chap.mutual) {
    await writeFile(join(authDir, 'userid_mutual'), chap.mutual.userid);
    await writeFile(join(authDir, 'password_mutual'), chap.mutual.password);
  }
}

/**
 * Export on the in-kernel iSCSI target. Access is decided here, before the
 * TPG is enabled: with a list of initiators each gets an ACL with LUN 0
 * mapped and any other initiator name is refused at login; with 'any' the
 * TPG runs in demo mode. With CHAP, `attrib/authentication=1` makes the
 * kernel refuse a login that did not pass CHAP (AuthMethod=None included).
 * On any failure the half-made target is removed again, so a refused
 * export never leaves an open one behind.
 */
export async function exportIscsi(name: string, opts: IscsiExportOptions, root = CONFIGFS_TARGET): Promise<string> {
  const dev = await findDeviceDir(name, root);
  const iqn = opts.iqn ?? `iqn.2026-11.io.tcmu-ts:${name.toLowerCase()}`;
  validateIscsiName('target name', iqn);
  validatePortal('portal', opts.portal);
  if (opts.initiators !== 'any') {
    if (!Array.isArray(opts.initiators) || opts.initiators.length === 0) {
      throw Object.assign(new Error('an iSCSI export needs initiator IQNs (--initiator IQN, repeatable) or explicitly "any"'), { code: 'EINVAL' });
    }
    for (const initiator of opts.initiators) validateIscsiName('initiator', initiator);
  }
  const tpg = join(root, 'iscsi', iqn, 'tpgt_1');
  if (await exists(join(tpg, 'lun', 'lun_0'))) throw Object.assign(new Error(`iSCSI target ${iqn} already exports a LUN`), { code: 'EEXIST' });
  await mkdir(join(tpg, 'lun', 'lun_0'), { recursive: true });
  try {
    await applyCompletionAffinity(tpg, opts.completionAffinity);
    await symlink(dev, join(tpg, 'lun', 'lun_0', basename(dev)));
    await mkdir(join(tpg, 'np', opts.portal));
    if (opts.initiators === 'any') {
      await writeFile(join(tpg, 'attrib', 'generate_node_acls'), '1');
      await writeFile(join(tpg, 'attrib', 'demo_mode_write_protect'), '0');
      if (opts.chap) {
        if (!(await exists(join(tpg, 'auth')))) {
          throw Object.assign(new Error('this kernel has no TPG-wide CHAP (tpgt_1/auth) for initiators = "any": list the initiators instead'), {
            code: 'EOPNOTSUPP',
          });
        }
        await writeChap(join(tpg, 'auth'), opts.chap);
      }
    } else {
      await writeFile(join(tpg, 'attrib', 'generate_node_acls'), '0');
      for (const initiator of opts.initiators) {
        const acl = join(tpg, 'acls', initiator);
        await mkdir(join(acl, 'lun_0'), { recursive: true });
        await symlink(join(tpg, 'lun', 'lun_0'), join(acl, 'lun_0', 'lun_0'));
        if (opts.chap) await writeChap(join(acl, 'auth'), opts.chap);
      }
    }
    await writeFile(join(tpg, 'attrib', 'authentication'), opts.chap ? '1' : '0');
    if (opts.chap) await writeFile(join(tpg, 'param', 'AuthMethod'), 'CHAP');
    await writeFile(join(tpg, 'enable'), '1');
  } catch (err) {
    const lunDir = join(tpg, 'lun', 'lun_0');
    for (const entry of await readdir(lunDir).catch(() => [] as string[])) await unlink(join(lunDir, entry)).catch(() => undefined);
    await rmdir(lunDir).catch(() => undefined);
    await removeTpgAndTarget(tpg).catch(() => undefined);
    throw err;
  }
  return iqn;
}

/** Every fabric LUN directory (…/tpgt_N/lun/lun_M) whose link points at `deviceDir`. */
async function findExports(deviceDir: string, root: string): Promise<string[]> {
  const found: string[] = [];
  for (const fabric of ['loopback', 'iscsi']) {
    const fabricDir = join(root, fabric);
    for (const wwn of await readdir(fabricDir).catch(() => [] as string[])) {
      if (!wwn.startsWith('naa.') && !wwn.startsWith('iqn.')) continue;
      for (const tpgt of await readdir(join(fabricDir, wwn)).catch(() => [] as string[])) {
        if (!tpgt.startsWith('tpgt_')) continue;
        const lunRoot = join(fabricDir, wwn, tpgt, 'lun');
        for (const lun of await readdir(lunRoot).catch(() => [] as string[])) {
          for (const entry of await readdir(join(lunRoot, lun)).catch(() => [] as string[])) {
            const target = await readlink(join(lunRoot, lun, entry)).catch(() => undefined);
            if (target && basename(target) === basename(deviceDir) && target.includes(basename(join(deviceDir, '..')))) {
              found.push(join(lunRoot, lun));
            }
          }
        }
      }
    }
  }
  return found;
}

/** Remove every export of the LUN, tearing down targets left empty. */
export async function unexport(name: string, root = CONFIGFS_TARGET): Promise<void> {
  const dev = await findDeviceDir(name, root);
  for (const lunDir of await findExports(dev, root)) {
    for (const entry of await readdir(lunDir)) {
      const p = join(lunDir, entry);
      if ((await readlink(p).catch(() => undefined)) !== undefined) await unlink(p);
    }
    await rmdir(lunDir);
    const tpg = join(lunDir, '..', '..');
    const remaining = await readdir(join(tpg, 'lun')).catch(() => [] as string[]);
    if (remaining.length === 0) await removeTpgAndTarget(tpg);
  }
}

async function removeTpgAndTarget(tpg: string): Promise<void> {
  for (const sub of ['acls', 'np']) {
    for (const entry of await readdir(join(tpg, sub)).catch(() => [] as string[])) {
      // ACL dirs hold mapped-LUN dirs that must go first.
      for (const inner of await readdir(join(tpg, sub, entry)).catch(() => [] as string[])) {
        if (inner.startsWith('lun_')) {
          for (const link of await readdir(join(tpg, sub, entry, inner)).catch(() => [] as string[])) {
            await unlink(join(tpg, sub, entry, inner, link)).catch(() => undefined);
          }
          await rmdir(join(tpg, sub, entry, inner)).catch(() => undefined);
        }
      }
      await rmdir(join(tpg, sub, entry)).catch(() => undefined);
    }
  }
  await writeFile(join(tpg, 'enable'), '0').catch(() => undefined);
  await rmdir(tpg);
  await rmdir(join(tpg, '..')); // the target (wwn) directory
}

/** Unexport and remove the device (the kernel sends REMOVED_DEVICE to the runner). */
export async function deleteTcmuDevice(name: string, root = CONFIGFS_TARGET): Promise<void> {
  await unexport(name, root);
  const dev = await findDeviceDir(name, root);
  await rmdir(dev);
}

export async function listTcmuLuns(root = CONFIGFS_TARGET): Promise<LioDevice[]> {
  const core = join(root, 'core');
  const out: LioDevice[] = [];
  for (const hba of await readdir(core).catch(() => [] as string[])) {
    const m = /^user_(\d+)$/.exec(hba);
    if (!m) continue;
    for (const name of await readdir(join(core, hba))) {
      const dir = join(core, hba, name);
      if (!(await stat(dir)).isDirectory() || name === 'hba_info' || name === 'hba_mode') continue;
      const read = (p: string) => readFile(join(dir, p), 'utf8').then((s) => s.trim(), () => '');
      out.push({
        name,
        hbaIndex: Number(m[1]),
        dir,
        devConfig: await read('attrib/dev_config'),
        size: Number(await read('attrib/dev_size')) || 0,
        enabled: (await read('enable')) === '1',
        exports: await findExports(dir, root),
      });
    }
  }
  return out;
}
