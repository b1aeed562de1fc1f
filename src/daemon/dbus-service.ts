/**
 * The D-Bus face targetcli looks for: the well-known name
 * `org.kernel.TCMUService1` on the system bus, an ObjectManager at
 * `/org/kernel/TCMUService1`, and below it one object per handler
 * (`/org/kernel/TCMUService1/<subtype>`) with the interface
 * `org.kernel.TCMUService1`:
 *   property ConfigDesc  s       shown by `targetcli ... help create`
 *   CheckConfig(s) -> (b, s)     targetcli calls it with "<subtype>/<cfgstring>"
 *                                before creating a user:<subtype> backstore
 *   ChangeMedium(s, t, s) -> (i, s)
 * targetcli-fb lists `user:<subtype>` backstores from GetManagedObjects
 * and prints CheckConfig's reason when it refuses. These names are
 * tcmu-runner's (its D-Bus interface description); the code is our own.
 *
 * The bus is optional: without one (no system bus, no policy allowing the
 * name, another runner owning it) the daemon logs one line and serves on.
 * The name is requested without queueing, so tcmu-ts never waits for, or
 * takes over, the name of a tcmu-runner that is already running.
 */
import dbus from 'dbus-next';
import type { Logger } from 'pino';
import type { CheckResult } from './check-config.js';

export const BUS_NAME = 'org.kernel.TCMUService1';
export const ROOT_PATH = '/org/kernel/TCMUService1';
export const HANDLER_INTERFACE = 'org.kernel.TCMUService1';
const OBJECT_MANAGER = 'org.freedesktop.DBus.ObjectManager';

/** What `targetcli /backstores/user:<subtype> help create` prints under CFGSTRING FORMAT. */
const CFGSTRING_FORMATS: Record<string, string> = {
  file: 'cfgstring: /absolute/path/to/image[;create=1][;extend=1][;io=auto|uring|threads] (create=1 makes the file at the LUN size)',
  qcow2: 'cfgstring: /absolute/path/to/image.qcow2 (the LUN exposes the image\'s virtual size; create the image with qemu-img or tcmu-ts image create)',
  ram: 'cfgstring: empty, optionally ;size=<bytes|K|M|G> (the size normally comes from targetcli\'s size=)',
};

export interface HandlerInfo {
  name: string;
  description?: string;
}

export interface DbusServiceOptions {
  log: Logger;
  handlers: readonly HandlerInfo[];
  /** Runs the daemon's enable-time validation without opening for writing (check-config.ts). */
  check: (devConfig: string, subtype: string) => Promise<CheckResult>;
  /** Connect here instead of the system bus (tests: a private dbus-daemon). */
  busAddress?: string;
  /** How long to wait for the bus to answer; default 5 s. */
  connectTimeoutMs?: number;
}

export interface DbusService {
  readonly objectPaths: readonly string[];
  close(): void;
}

/** Checks queued at once beyond this are refused: a busy bus client must not pile up opens. */
const MAX_PENDING_CHECKS = 8;
const EOPNOTSUPP = -95;

export function configDescription(handler: HandlerInfo): string {
  const what = handler.description ? `tcmu-ts ${handler.name}: ${handler.description}` : `tcmu-ts ${handler.name} handler`;
  const format = CFGSTRING_FORMATS[handler.name];
  return format ? `${what}. ${format}` : what;
}

/** Serializes checks: each opens files, and one at a time is plenty for an admin tool. */
class CheckQueue {
  private tail: Promise<unknown> = Promise.resolve();
  private pending = 0;

  constructor(private readonly check: DbusServiceOptions['check']) {}

  run(devConfig: string, subtype: string): Promise<CheckResult> {
    if (this.pending >= MAX_PENDING_CHECKS) {
      return Promise.resolve({ ok: false, reason: `tcmu-ts is busy: ${this.pending} configuration checks are already waiting; try again` });
    }
    this.pending++;
    const result = this.tail.then(() => this.check(devConfig, subtype)).catch((err: unknown) => ({ ok: false, reason: `check failed: ${(err as Error)?.message ?? String(err)}` }));
    this.tail = result.finally(() => this.pending--);
    return result;
  }
}

class HandlerObject extends dbus.interface.Interface {
  constructor(
    readonly subtype: string,
    private readonly desc: string,
    private readonly queue: CheckQueue,
    private readonly log: Logger,
  ) {
    super(HANDLER_INTERFACE);
  }

  get ConfigDesc(): string {
    return this.desc;
  }

  async CheckConfig(cfgstring: string): Promise<[boolean, string]> {
    const result = await this.queue.run(cfgstring, this.subtype);
    this.log.info({ subtype: this.subtype, devConfig: cfgstring.slice(0, 300), ok: result.ok, reason: result.reason }, 'D-Bus CheckConfig');
    return [result.ok, result.reason];
  }

  ChangeMedium(name: string, _size: bigint, _cfgstring: string): [number, string] {
    return [
      EOPNOTSUPP,
      `tcmu-ts does not change media over D-Bus (LUN ${String(name).slice(0, 64)}); write the new dev_config/dev_size to the device's configfs attributes instead, which the daemon applies as a RECONFIG`,
    ];
  }
}
HandlerObject.configureMembers({
  properties: { ConfigDesc: { signature: 's', access: 'read' } },
  methods: {
    CheckConfig: { inSignature: 's', outSignature: 'bs' },
    ChangeMedium: { inSignature: 'sts', outSignature: 'is' },
  },
});

class ObjectManager extends dbus.interface.Interface {
  constructor(private readonly objects: readonly { path: string; iface: HandlerObject }[]) {
    super(OBJECT_MANAGER);
  }

  GetManagedObjects(): Record<string, Record<string, Record<string, InstanceType<typeof dbus.Variant>>>> {
    const managed: Record<string, Record<string, Record<string, InstanceType<typeof dbus.Variant>>>> = {};
    for (const { path, iface } of this.objects) {
      managed[path] = { [HANDLER_INTERFACE]: { ConfigDesc: new dbus.Variant('s', iface.ConfigDesc) } };
    }
    return managed;
  }
}
ObjectManager.configureMembers({
  methods: { GetManagedObjects: { inSignature: '', outSignature: 'a{oa{sa{sv}}}' } },
});

/**
 * D-Bus object path elements allow only [A-Za-z0-9_], and targetcli takes
 * the subtype back from the last element: a subtype with '-' cannot be
 * offered (tcmu-runner has the same limit).
 */
export function objectPathOf(subtype: string): string | undefined {
  return /^[A-Za-z0-9_]+$/.test(subtype) ? `${ROOT_PATH}/${subtype}` : undefined;
}

/**
 * Connect, export the objects and take the name. Resolves undefined (after
 * one log line) when there is no usable bus; never rejects.
 */
export async function startDbusService(opts: DbusServiceOptions): Promise<DbusService | undefined> {
  const log = opts.log.child({ component: 'dbus' });
  let bus: dbus.MessageBus;
  try {
    bus = opts.busAddress ? dbus.sessionBus({ busAddress: opts.busAddress }) : dbus.systemBus();
  } catch (err) {
    log.info({ err: (err as Error).message }, 'no D-Bus: targetcli will not list tcmu-ts handlers');
    return undefined;
  }
  let connected = false;
  const failed = new Promise<never>((_, reject) => bus.once('error', reject));
  failed.catch(() => undefined);
  bus.on('error', (err: unknown) => {
    if (!connected) return;
    connected = false;
    log.warn({ err: (err as Error)?.message ?? String(err) }, 'D-Bus connection lost: targetcli no longer sees tcmu-ts (restart the daemon to re-register)');
  });

  const queue = new CheckQueue(opts.check);
  const objects: { path: string; iface: HandlerObject }[] = [];
  for (const h of opts.handlers) {
    const path = objectPathOf(h.name);
    if (path) objects.push({ path, iface: new HandlerObject(h.name, configDescription(h), queue, log) });
    else log.warn({ handler: h.name }, 'handler not offered on D-Bus: its name is not a valid D-Bus path element ([A-Za-z0-9_]); rename it to use it from targetcli');
  }
  const manager = new ObjectManager(objects);
  let timer: NodeJS.Timeout | undefined;
  try {
    bus.export(ROOT_PATH, manager);
    for (const { path, iface } of objects) bus.export(path, iface);
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the bus did not answer within ${opts.connectTimeoutMs ?? 5000} ms`)), opts.connectTimeoutMs ?? 5000);
    });
    const reply = await Promise.race([bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE), failed, timeout]);
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
      throw new Error(`${BUS_NAME} is owned by another process (tcmu-runner?); tcmu-ts leaves it alone`);
    }
  } catch (err) {
    connected = false;
    const reason = (err as Error)?.message ?? String(err);
    log.info({ reason }, 'no D-Bus service: targetcli will not list tcmu-ts handlers; serving without it');
    bus.disconnect();
    return undefined;
  } finally {
    clearTimeout(timer);
  }
  connected = true;
  log.info({ name: BUS_NAME, handlers: objects.map((o) => o.iface.subtype) }, 'D-Bus service registered');
  return {
    objectPaths: objects.map((o) => o.path),
    close() {
      connected = false;
      bus.disconnect();
    },
  };
}
