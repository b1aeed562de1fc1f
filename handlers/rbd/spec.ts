/**
 * The rbd handler's dev_config: `rbd/POOL/IMAGE[@SNAP]` with options
 *   conf=PATH           ceph.conf (default /etc/ceph/ceph.conf)
 *   id=NAME             cephx user without "client." (default admin)
 *   keyring=PATH        keyring file (default: what ceph.conf says)
 *   osd_op_timeout=SECS a cluster operation (and the initial connect) that
 *                       takes longer fails with ETIMEDOUT (default 30; 0 = wait forever)
 *   cache=none|writethrough|writeback
 *                       none (default): librbd's cache is off, a write is
 *                       acknowledged once the OSDs have it, so a daemon crash
 *                       loses nothing acknowledged, and the LUN reports no
 *                       write cache (WCE=0). writethrough: librbd's cache on
 *                       with no dirty data allowed (rbd_cache_max_dirty=0): it
 *                       serves re-reads, every write still waits for the OSDs,
 *                       WCE=0 (what tcmu-runner's rbd handler gets from
 *                       librbd's defaults while no flush arrives).
 *                       writeback: librbd's cache holds writes until
 *                       SYNCHRONIZE CACHE (WCE=1); faster small writes, but a
 *                       crash of the daemon loses what was not flushed, as a
 *                       power cut loses a disk's cache.
 *   thread_policy=batch|normal
 *                       batch (default): the threads librados and librbd
 *                       start for the LUN run under SCHED_BATCH. Every
 *                       command wakes librbd's io_context thread; as a
 *                       normal thread it preempts the event loop that woke
 *                       it, under SCHED_BATCH it waits for an idle CPU, the
 *                       event loop's next sleep or the scheduler tick.
 *                       normal: the daemon's own policy.
 *   dispatch=inline|queued
 *                       inline (default): librbd runs each read and write
 *                       through its layers up to the messenger on the
 *                       thread that submits it, the event loop
 *                       (rbd_non_blocking_aio=false). queued: librbd first
 *                       hands each one to its io_context thread (librbd's
 *                       own default), one more thread wake-up per command.
 *                       Inline, the Objecter's in-flight throttles are
 *                       lifted so that a submission never waits for them:
 *                       what a LUN has in flight is bounded by its ring.
 * Parsed and checked here, before anything touches the network.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { rejectUnknownOptions } from '../../src/backstore/options.js';
import type { ConnectOptions, RbdThreadPolicy } from './librbd.js';

export interface RbdSpec {
  pool: string;
  image: string;
  /** '' = the image head. */
  snap: string;
  conf: string;
  id: string;
  keyring?: string;
  /** Seconds; 0 = no timeout. */
  osdOpTimeout: number;
  cache: RbdCacheMode;
  threadPolicy: RbdThreadPolicy;
  dispatch: RbdDispatch;
}

/** Where librbd runs a request's dispatch: on the submitting thread, or queued to its io_context thread. */
export type RbdDispatch = 'inline' | 'queued';
const DISPATCHES: readonly string[] = ['inline', 'queued'] satisfies RbdDispatch[];

export type RbdCacheMode = 'none' | 'writethrough' | 'writeback';
const CACHE_MODES: readonly string[] = ['none', 'writethrough', 'writeback'] satisfies RbdCacheMode[];
const THREAD_POLICIES: readonly string[] = ['batch', 'normal'] satisfies RbdThreadPolicy[];

export const DEFAULT_CONF = '/etc/ceph/ceph.conf';
export const DEFAULT_OSD_OP_TIMEOUT = 30;

/** Ceph's own naming rules are looser; these keep names printable and unambiguous in a dev_config. */
const NAME = /^[A-Za-z0-9_.+-][A-Za-z0-9_.+=-]{0,127}$/;

export function parseRbdSpec(config: string, options: Readonly<Record<string, string>>): RbdSpec {
  rejectUnknownOptions('rbd', options, ['conf', 'id', 'keyring', 'osd_op_timeout', 'cache', 'thread_policy', 'dispatch']);
  const at = config.indexOf('@');
  const path = at < 0 ? config : config.slice(0, at);
  const snap = at < 0 ? '' : config.slice(at + 1);
  const parts = path.split('/');
  if (parts.length !== 2 || !parts[0] || !parts[1]) {
    throw new ConfigError(`rbd: config "${config}" is not POOL/IMAGE[@SNAP] (e.g. rbd/rbd/disk0 as dev_config)`);
  }
  const [pool, image] = parts as [string, string];
  for (const [what, name] of [['pool', pool], ['image', image]] as const) {
    if (!NAME.test(name)) throw new ConfigError(`rbd: ${what} name "${name}" has characters other than letters, digits and _ . + - =`);
  }
  if (at >= 0 && !NAME.test(snap)) throw new ConfigError(`rbd: snapshot name "${snap}" is empty or has characters other than letters, digits and _ . + - =`);
  const id = options.id ?? 'admin';
  if (!NAME.test(id)) throw new ConfigError(`rbd: id "${id}" is not a cephx user name (without "client.")`);
  if (id.startsWith('client.')) throw new ConfigError(`rbd: id "${id}": give the user without "client." (id=${id.slice(7)})`);
  const conf = options.conf ?? DEFAULT_CONF;
  if (!conf.startsWith('/')) throw new ConfigError(`rbd: conf "${conf}" must be an absolute path`);
  const keyring = options.keyring;
  if (keyring !== undefined && !keyring.startsWith('/')) throw new ConfigError(`rbd: keyring "${keyring}" must be an absolute path`);
  let osdOpTimeout = DEFAULT_OSD_OP_TIMEOUT;
  if (options.osd_op_timeout !== undefined) {
    const v = options.osd_op_timeout;
    if (!/^\d{1,5}$/.test(v) || Number(v) > 86400) {
      throw new ConfigError(`rbd: osd_op_timeout "${v}" is not a whole number of seconds from 0 to 86400`);
    }
    osdOpTimeout = Number(v);
  }
  const cache = oneOf(options, 'cache', CACHE_MODES);
  const threadPolicy = oneOf(options, 'thread_policy', THREAD_POLICIES);
  const dispatch = oneOf(options, 'dispatch', DISPATCHES);
  return {
    pool,
    image,
    snap,
    conf,
    id,
    keyring,
    osdOpTimeout,
    cache: cache as RbdCacheMode,
    threadPolicy: threadPolicy as RbdThreadPolicy,
    dispatch: dispatch as RbdDispatch,
  };
}

/** Option `key`, one of `allowed` (the first is the default), or a ConfigError naming it. */
function oneOf(options: Readonly<Record<string, string>>, key: string, allowed: readonly string[]): string {
  const value = options[key] ?? allowed[0]!;
  if (allowed.includes(value)) return value;
  const choices = `${allowed.slice(0, -1).join(', ')} or ${allowed.at(-1)}`;
  throw new ConfigError(`rbd: ${key} "${value.slice(0, 40)}" must be ${choices}`);
}

/** What RbdSession.connect needs for a spec. */
export function connectOptions(spec: RbdSpec): ConnectOptions {
  return { conf: spec.conf, id: spec.id, settings: radosSettings(spec), pool: spec.pool, threadPolicy: spec.threadPolicy };
}

/** rados_conf_set pairs for a spec. */
export function radosSettings(spec: RbdSpec): Record<string, string> {
  const settings: Record<string, string> = {};
  // Explicit either way, whatever ceph.conf says: the LUN's WCE bit must tell the truth.
  settings.rbd_cache = spec.cache === 'none' ? 'false' : 'true';
  // No dirty bytes: librbd's cache then completes a write only once the OSDs have it.
  if (spec.cache === 'writethrough') settings.rbd_cache_max_dirty = '0';
  if (spec.cache === 'writeback') settings.rbd_cache_writethrough_until_flush = 'false';
  // librbd copies each write before sending it (its default), explicit
  // whatever ceph.conf says: with zero-copy writes librbd 16 never completes
  // a write that it fails (past the end of a shrunk image, from a fenced
  // client), so the command would hang instead of getting sense.
  settings.rbd_disable_zero_copy_writes = 'true';
  if (spec.keyring !== undefined) settings.keyring = spec.keyring;
  if (spec.osdOpTimeout > 0) {
    // Both: a request to a dead OSD, and the first connect to a dead monitor.
    settings.rados_osd_op_timeout = String(spec.osdOpTimeout);
    settings.rados_mon_op_timeout = String(spec.osdOpTimeout);
    settings.client_mount_timeout = String(spec.osdOpTimeout);
  }
  if (spec.dispatch === 'inline') {
    settings.rbd_non_blocking_aio = 'false';
    // An Objecter over its in-flight budget makes the submitting thread
    // wait, and inline that is the event loop, every LUN's. The ring bounds
    // what a LUN can have in flight (its commands and data area), so the
    // budget only has to stay above that: 2^20 operations, 4 GiB.
    settings.objecter_inflight_ops = String(1 << 20);
    settings.objecter_inflight_op_bytes = String(4 * 1024 ** 3);
  } else {
    settings.rbd_non_blocking_aio = 'true'; // explicit, whatever ceph.conf says
  }
  return settings;
}
