/**
 * `tcmu-ts serve`: the daemon. It
 *  - refuses to start when another instance owns the control socket;
 *  - subscribes to TCM-USER netlink events first, then opens every existing
 *    device of a handled subtype (so nothing added in between is missed);
 *  - answers ADDED / REMOVED / RECONFIG for its subtypes. Events for one
 *    device are handled in order; different devices never wait for each
 *    other (a slow backend open blocks only its own configfs write);
 *  - stops every LUN cleanly on SIGINT/SIGTERM.
 * A LUN that fails to open is logged and skipped: one bad LUN never keeps
 * the others down.
 */
import { dirname } from 'node:path';
import type { Server as NetServer } from 'node:net';
import type { Logger } from 'pino';
import { listTcmuDevices, parseUioName, readUioDevice, type TcmuUioDevice } from '../tcmu/discovery.js';
import { TcmuNetlink, type TcmuEvent } from '../tcmu/netlink/tcmu-events.js';
import { startControlServer } from './control.js';
import { Lun, type LunStatus } from './lun.js';
import { subtypeOf } from '../backstore/dev-config.js';
import { createFileOpener, type FileOpener } from '../backstore/confine.js';
import type { ControlResult } from '../backstore/types.js';
import { runLunControl } from './lun-control.js';
import { provisionLuns } from './provision.js';
import { validateLunName } from '../config/names.js';
import { KeyRing } from '../config/keyring.js';
import { keyControl } from './key-control.js';
import { DEFAULT_KEY_DIR } from '../config/key-files.js';
import type { DaemonConfig, LunConfig } from '../config/config.js';
import { FaultGuard, type FaultCounts } from './fault-guard.js';
import { sharedUringIo } from '../io/uring-io.js';
import type { MetricsSource } from './metrics.js';
import type { ListenAddress } from './metrics-address.js';
import { SystemdNotifier, countLuns } from './notify.js';
import { setLunLogLevel } from './lun-log-level.js';
import { ConfigReloader } from './config-reload.js';
import { COEXIST_ADVICE, describeRunners, findOtherRunners, readUioName, RESET_NETLINK } from './coexist.js';

export interface ServeOptions {
  log: Logger;
  /** Subtypes this runner answers for (devices with other subtypes belong to other runners). */
  subtypes: ReadonlySet<string>;
  /** Listen for netlink device events and declare kernel-reply support (default true). */
  netlink?: boolean;
  controlSocket?: string;
  /** Where CHAP and LUKS key files live (config `[daemon] key_dir`). */
  keyDir?: string;
  /** Every file a handler opens must lie beneath one of these (empty: anywhere); see backstore/confine.ts. */
  allowedDirs?: readonly string[];
  /** LUNs from the config file, created in the kernel if missing. */
  luns?: readonly LunConfig[];
  uioRoot?: string;
  configfsRoot?: string;
  /** Offer the handlers to targetcli on the system bus (default true; see dbus-service.ts). */
  dbus?: boolean;
  /** Serve Prometheus metrics here (see metrics.ts). */
  metrics?: ListenAddress;
  /** SIGHUP re-reads the config file: the config as started, and how to load it again (see config-reload.ts). */
  reload?: { config: DaemonConfig; load: () => DaemonConfig };
}

/** Negative errno values for netlink replies. */
const EINVAL = -22;
const ENODEV = -19;
const NEGATIVE_ERRNO: Record<string, number> = { EACCES: -13, ENOENT: -2, EEXIST: -17, EISDIR: -21, EROFS: -30 };

export class Server {
  private readonly luns = new Map<string, Lun>();
  /** Per-device chain so events for one uio run in order. */
  private readonly queues = new Map<string, Promise<void>>();
  private netlink?: TcmuNetlink;
  /** The one opener every LUN's handlers use, on add and on RECONFIG alike. */
  private readonly files: FileOpener;
  /** Process-level faults fail the LUN they come from (installed by serveForever). */
  readonly faultGuard: FaultGuard;
  /** Failed LUN opens by subtype, for monitoring. */
  private readonly openFailures = new Map<string, number>();
  /** Keys for crypt layers: key_dir files plus memory-only keys (wiped at stop). */
  readonly keys: KeyRing;

  constructor(private readonly opts: ServeOptions) {
    this.files = createFileOpener(opts.allowedDirs ?? []);
    this.keys = new KeyRing(opts.keyDir ?? DEFAULT_KEY_DIR);
    this.faultGuard = new FaultGuard(opts.log);
  }

  /** Process-level faults seen so far (see fault-guard.ts). */
  faults(): FaultCounts {
    return { ...this.faultGuard.counts };
  }

  /** Open every handled device not yet served. Returns how many were opened by this call. */
  async scan(): Promise<number> {
    // Already served devices are not counted (open() answers 0 for them too).
    const found = listTcmuDevices(this.opts.uioRoot).filter((d) => this.opts.subtypes.has(d.subtype) && !this.luns.has(d.uio));
    const opened = await Promise.all(found.map((d) => this.serialize(d.uio, () => this.open(d, { fresh: false }))));
    return opened.filter((status) => status === 0).length;
  }

  async listenForEvents(): Promise<void> {
    const netlink = new TcmuNetlink();
    await netlink.open(
      (ev) => this.onEvent(ev),
      (err) => this.opts.log.error({ err }, 'netlink socket error'),
    );
    this.netlink = netlink;
    await netlink.enableReplies();
    const others = findOtherRunners();
    if (others.length > 0) {
      this.opts.log.warn(
        { runners: describeRunners(others), subtypes: [...this.opts.subtypes] },
        `another TCMU runner is running: it answers the kernel for every device, and refuses those of subtypes it lacks before tcmu-ts can answer; ${COEXIST_ADVICE}`,
      );
    }
  }

  /** What the metrics endpoint reads on each scrape. */
  metricsSource(): MetricsSource {
    return {
      luns: () => [...this.luns.values()].map((l) => ({ id: l.id, counters: l.counters, inFlight: l.status().stats?.inFlight ?? 0, stuckEvents: l.status().stuckEvents })),
      openFailures: () => this.openFailures,
      inlineWritePauses: () => sharedUringIo()?.inlineWrites.pauses ?? 0, // created at start (serve()), so no side effect here
    };
  }

  list(): LunStatus[] {
    return [...this.luns.values()].map((l) => l.status());
  }

  /**
   * The status of every LUN plus, where a layer of its stack describes its
   * image online (qcow2's `image info`), that image's space figures:
   * logical and allocated size, compressed clusters, compression ratio. It
   * reads the image's tables, so only `status --space` asks for it.
   */
  async listWithSpace(): Promise<Array<LunStatus & { space?: unknown }>> {
    return Promise.all(
      [...this.luns.values()].map(async (lun) => {
        const status = lun.status();
        if (status.state !== 'serving') return status;
        try {
          const info = (await this.control(lun.id, 'image.info', {})).value as { space?: unknown } | undefined;
          return info?.space === undefined ? status : { ...status, space: info.space };
        } catch {
          return status; // no layer offers it (a file or rbd LUN), or the LUN stopped meanwhile
        }
      }),
    );
  }

  /** A served LUN by its configfs name (`lun0`) or id (`user_1/lun0`). */
  find(name: string): Lun {
    for (const lun of this.luns.values()) {
      if (lun.device.deviceName === name || lun.id === name) return lun;
    }
    throw Object.assign(new Error(`no served LUN named ${name}`), { code: 'ENOENT' });
  }

  /** Run online control operation `op` ('snapshot.create', ...) on a served LUN (see lun-control.ts). */
  async control(name: string, op: string, rawArgs: Readonly<Record<string, unknown>>): Promise<ControlResult> {
    return runLunControl(this.find(name), op, rawArgs, this.files);
  }

  async stop(): Promise<void> {
    this.netlink?.close();
    const luns = [...this.luns.values()];
    this.luns.clear();
    await Promise.allSettled(luns.map((l) => l.stop()));
    this.keys.clear();
  }

  private serialize<T>(uio: string, work: () => Promise<T>): Promise<T> {
    const prev = this.queues.get(uio) ?? Promise.resolve();
    const next = prev.then(work);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(uio, settled);
    settled.then(() => {
      if (this.queues.get(uio) === settled) this.queues.delete(uio);
    });
    return next;
  }

  /** Opens the LUN; returns 0 or the negative errno to refuse the device with. */
  private async open(device: TcmuUioDevice, mode: { fresh: boolean }): Promise<number> {
    if (this.luns.has(device.uio)) return 0;
    const lun = new Lun(device, {
      log: this.opts.log,
      configfsRoot: this.opts.configfsRoot,
      files: this.files,
      keys: this.keys,
      faultGuard: this.faultGuard,
      runDir: this.opts.controlSocket ? dirname(this.opts.controlSocket) : undefined,
      // The metrics endpoint is fixed for the daemon's life (a reload cannot add it).
      timeLatency: this.opts.metrics !== undefined,
    });
    try {
      // Confinement happens inside the handler's own opens (this.files).
      await lun.start(mode);
      this.luns.set(device.uio, lun);
      return 0;
    } catch (err) {
      if (readUioName(device.uio, this.opts.uioRoot) !== `tcm-user/${device.hbaIndex}/${device.deviceName}/${device.devConfig}`) {
        // Not a failure of ours: the kernel dropped the device meanwhile (another runner refused it first, or it was deleted).
        lun.log.warn({ err: (err as Error)?.message, devConfig: device.devConfig }, 'device went away while tcmu-ts opened it; nothing to serve');
        return ENODEV;
      }
      lun.log.error({ err, devConfig: device.devConfig }, 'cannot serve LUN');
      this.openFailures.set(device.subtype, (this.openFailures.get(device.subtype) ?? 0) + 1);
      return NEGATIVE_ERRNO[(err as NodeJS.ErrnoException).code ?? ''] ?? EINVAL;
    }
  }

  private onEvent(ev: TcmuEvent): void {
    const parsed = parseUioName(ev.uioName);
    const uio = `uio${ev.minor}`;
    if (!parsed || !this.opts.subtypes.has(parsed.subtype)) {
      this.foreignEvent(ev, uio, parsed?.subtype);
      return;
    }
    this.serialize(uio, () => this.handleEvent(ev, uio))
      .then(async (status) => {
        try {
          await this.netlink?.reply(ev, status);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENODEV') throw err;
          await this.replyNotTaken(ev, uio, status);
        }
      })
      .catch((err) => this.opts.log.error({ err, event: ev.kind, uio }, 'could not answer netlink event'));
  }

  /**
   * A device of a subtype tcmu-ts does not serve: its own runner answers.
   * tcmu-ts never does, not even with an error (that could refuse a device
   * its runner is still opening: the kernel takes the first answer).
   */
  private foreignEvent(ev: TcmuEvent, uio: string, subtype: string | undefined): void {
    const fields = { uio, event: ev.kind, subtype: subtype ?? null, device: ev.uioName.slice(0, 200) };
    if (ev.kind !== 'added') {
      this.opts.log.debug(fields, 'netlink event for another runner\'s device; not answered');
      return;
    }
    const others = findOtherRunners();
    if (others.length > 0) {
      this.opts.log.info({ ...fields, runners: describeRunners(others) }, 'device of a subtype tcmu-ts does not serve: left to the other runner');
    } else {
      this.opts.log.warn(
        fields,
        `device of a subtype tcmu-ts does not serve, and no other TCMU runner is running: the kernel keeps its enable waiting until one answers (unless it was made with nl_reply_supported=-1); start that runner, or fail the waiting enable with: ${RESET_NETLINK}`,
      );
    }
  }

  /**
   * The kernel did not take our *_DONE reply (ENODEV): it waited for no one
   * (nl_reply_supported=-1, the normal case then), or another runner
   * answered first. For ADDED the device tells which: if the kernel refused
   * it, its uio goes away, and a LUN opened for it must close.
   */
  private async replyNotTaken(ev: TcmuEvent, uio: string, status: number): Promise<void> {
    const log = this.opts.log.child({ uio, event: ev.kind });
    if (ev.kind === 'added') {
      if (status !== 0 || !(await this.deviceVanishes(uio, ev.uioName))) {
        log.debug('netlink reply not needed: the kernel did not wait for one (nl_reply_supported=-1)');
        return;
      }
      const others = findOtherRunners();
      log.error(
        { device: ev.uioName.slice(0, 200), runners: describeRunners(others) },
        `the kernel refused this device before tcmu-ts answered: ${others.length ? 'the other runner' : 'another runner'} answered first with an error; LUN closed. ${COEXIST_ADVICE}`,
      );
      await this.serialize(uio, async () => {
        const lun = this.luns.get(uio);
        // Only the LUN opened for this very device (the minor may be reused meanwhile).
        if (lun && `tcm-user/${lun.device.hbaIndex}/${lun.device.deviceName}/${lun.device.devConfig}` === ev.uioName.trim()) {
          this.luns.delete(uio);
          await lun.stop({ deviceGone: true });
        }
      });
      return;
    }
    const others = ev.kind === 'reconfig' ? findOtherRunners() : [];
    if (others.length > 0) {
      log.warn(
        { runners: describeRunners(others), devConfig: ev.kind === 'reconfig' ? ev.devConfig : undefined },
        'the other runner answered this RECONFIG first (tcmu-runner refuses it with ENODEV): the kernel may have kept its old setting while tcmu-ts applied the new one; compare `tcmu-ts status` with configfs',
      );
    } else {
      log.debug('netlink reply not needed: the kernel did not wait for one (nl_reply_supported=-1)');
    }
  }

  /** True when uio `uio` stops being the device `name` within ~2 s (the kernel unregisters a refused device right after the first reply). */
  private async deviceVanishes(uio: string, name: string): Promise<boolean> {
    for (let i = 0; i < 10; i++) {
      const now = readUioName(uio, this.opts.uioRoot);
      if (now !== name.trim()) return true;
      await new Promise((r) => setTimeout(r, 200));
    }
    return false;
  }

  /** Returns the status for the *_DONE reply: 0 or a negative errno. */
  private async handleEvent(ev: TcmuEvent, uio: string): Promise<number> {
    const log = this.opts.log.child({ uio, event: ev.kind });
    switch (ev.kind) {
      case 'added': {
        let device: TcmuUioDevice | undefined;
        try {
          device = readUioDevice(uio, this.opts.uioRoot);
        } catch (err) {
          if (readUioName(uio, this.opts.uioRoot) !== undefined) throw err;
          device = undefined; // unregistered between the reads of its sysfs files
        }
        if (!device) return ENODEV;
        return this.open(device, { fresh: true });
      }
      case 'removed': {
        const lun = this.luns.get(uio);
        this.luns.delete(uio);
        if (lun) await lun.stop({ deviceGone: true });
        return 0;
      }
      case 'reconfig': {
        const lun = this.luns.get(uio);
        if (!lun) return ENODEV;
        try {
          if (ev.devSize !== undefined) await lun.resize(ev.devSize);
          if (ev.devConfig !== undefined) {
            const next = ev.devConfig.trim();
            if (subtypeOf(next) !== lun.device.subtype) {
              log.error({ devConfig: next }, 'refusing reconfig: the subtype cannot change on a live LUN');
              return EINVAL;
            }
            await lun.changeConfig(next);
          }
          if (ev.writeCache !== undefined) {
            log.warn({ writeCache: ev.writeCache }, 'write cache reconfig: the initiator controls WCE via MODE SELECT');
          }
          return 0;
        } catch (err) {
          log.error({ err, devConfig: ev.devConfig }, 'reconfig refused; the LUN keeps its current store');
          return NEGATIVE_ERRNO[(err as NodeJS.ErrnoException).code ?? ''] ?? EINVAL;
        }
      }
    }
  }
}

/** A LUN named in a control request: a name or an id "user_N/name", by the same rule as the config and the CLI. */
function lunName(value: unknown): string {
  const lun = String(value);
  validateLunName(/^user_\d{1,9}\//.test(lun) ? lun.slice(lun.indexOf('/') + 1) : lun);
  return lun;
}

/** Run until a signal: the body of `tcmu-ts serve`. */
export async function serveForever(opts: ServeOptions): Promise<void> {
  const server = new Server(opts);
  server.faultGuard.install();
  // The io_uring every LUN's file/qcow2 I/O shares is created here, outside
  // any LUN's fault context, so its callbacks are nobody's in particular.
  sharedUringIo();
  // The control socket is also the single-instance guard: no daemon runs without one.
  if (!opts.controlSocket) throw Object.assign(new Error('a control socket path is required (it keeps a second daemon from serving the same LUNs)'), { code: 'EINVAL' });
  const control: NetServer = await startControlServer(opts.controlSocket, async (req) => {
    switch (req.cmd) {
      case 'status':
        return { pid: process.pid, luns: req.space === true ? await server.listWithSpace() : server.list(), faults: server.faults() };
      case 'rescan':
        return { opened: await server.scan() };
      case 'control': {
        const args = req.args ?? {};
        if (typeof args !== 'object' || args === null || Array.isArray(args)) {
          throw Object.assign(new Error('control: "args" must be an object'), { code: 'EINVAL' });
        }
        return server.control(lunName(req.lun), String(req.op), args as Record<string, unknown>);
      }
      case 'snapshot': {
        // The request older CLIs send; answers with the bare result as they expect.
        const args = req.name === undefined ? {} : { name: String(req.name) };
        return (await server.control(lunName(req.lun), `snapshot.${String(req.op)}`, args)).value;
      }
      case 'key':
        return keyControl(server.keys, req, () => server.scan());
      case 'log-level': {
        const lun = String(req.lun);
        validateLunName(/^user_\d{1,9}\//.test(lun) ? lun.slice(lun.indexOf('/') + 1) : lun);
        return setLunLogLevel(server.find(lun), req.level);
      }
      default:
        throw Object.assign(new Error(`unknown control command ${JSON.stringify(req.cmd)?.slice(0, 80)}`), { code: 'EINVAL' });
    }
  });
  if (opts.netlink !== false) await server.listenForEvents();
  const opened = await server.scan();
  if (opts.luns?.length) {
    await provisionLuns(opts.luns, opts.log, opts.keyDir);
    // Without netlink nobody told us about the devices just created.
    if (opts.netlink === false) await server.scan();
  }
  // D-Bus and Prometheus code is loaded only when used (dbus-next and
  // prom-client are a third of the modules a daemon start would read).
  const dbus = opts.dbus === false ? undefined : await (await import('./dbus-start.js')).startTargetcliService({ log: opts.log, subtypes: opts.subtypes, allowedDirs: opts.allowedDirs ?? [] });
  const metrics = opts.metrics ? await (await import('./metrics.js')).startMetricsServer(opts.metrics, server.metricsSource(), opts.log) : undefined;
  opts.log.info({ luns: server.list().length, reopened: opened }, 'tcmu-ts ready');
  const systemd = SystemdNotifier.fromEnv(opts.log);
  systemd?.ready(() => countLuns(server.list()));

  const reloader = opts.reload ? new ConfigReloader(opts.reload.config, opts.reload.load, opts.log) : undefined;
  process.on('SIGHUP', () => {
    (reloader?.reload() ?? Promise.resolve()).then(() => server.scan()).then(
      (n) => opts.log.info({ opened: n }, 'rescan done'),
      (err) => opts.log.error({ err }, 'rescan failed'),
    );
  });

  await new Promise<void>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      opts.log.info({ signal }, 'stopping');
      systemd?.stopping();
      dbus?.close();
      server.stop().finally(resolve);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  control.close();
  await metrics?.close();
  systemd?.close();
  server.faultGuard.remove();
  opts.log.info('tcmu-ts stopped');
}
