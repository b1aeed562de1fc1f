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
 * takes over, the name of a tcmu-runner that is already running (the log
 * line names the owner and its handlers). A lost connection (the bus
 * restarted) is reported to the caller, which registers again.
 */
import { readFileSync } from 'node:fs';
import dbus from 'dbus-next';
import type { Logger } from 'pino';
import type { CheckResult } from './check-config.js';
import { NO_BUS_MESSAGE } from './dbus-start.js';

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

/** Why there is no service: no usable bus (worth retrying later), or the name is another runner's (leave it alone). */
export type DbusUnavailable = { kind: 'no-bus' | 'name-taken'; reason: string };

/**
 * Connect, export the objects and take the name. Resolves undefined (after
 * one log line) when there is no usable bus; never rejects.
 */
export async function startDbusService(opts: DbusServiceOptions): Promise<DbusService | undefined> {
  const result = await tryDbusService(opts);
  return 'kind' in result ? undefined : result;
}

/**
 * startDbusService, telling why it failed. `onLost` runs once if the
 * connection later drops (the bus restarted): the objects are gone from the
 * bus then, and the caller may register again (dbus-start.ts does).
 */
export async function tryDbusService(opts: DbusServiceOptions & { onLost?: (reason: string) => void; quiet?: boolean }): Promise<DbusService | DbusUnavailable> {
  const log = opts.log.child({ component: 'dbus' });
  const say = (fields: object, msg: string) => (opts.quiet ? log.debug(fields, msg) : log.info(fields, msg));
  let bus: dbus.MessageBus;
  try {
    bus = opts.busAddress ? dbus.sessionBus({ busAddress: opts.busAddress }) : dbus.systemBus();
  } catch (err) {
    say({ err: (err as Error).message }, 'no D-Bus: targetcli will not list tcmu-ts handlers');
    return { kind: 'no-bus', reason: (err as Error).message };
  }
  let connected = false;
  let closedByUs = false;
  const failed = new Promise<never>((_, reject) => bus.once('error', reject));
  failed.catch(() => undefined);
  const lost = (why: string) => {
    if (!connected) return;
    connected = false;
    log.warn({ reason: why }, 'D-Bus connection lost: targetcli no longer sees tcmu-ts until the bus is back; serving goes on');
    try {
      bus.disconnect();
    } catch {
      // already closed
    }
    opts.onLost?.(why);
  };
  bus.on('error', (err: unknown) => lost((err as Error)?.message ?? String(err)));
  // dbus-next forwards stream errors but not the end of the stream (the bus daemon exited).
  (bus as unknown as { _connection?: { on(ev: 'end', f: () => void): void } })._connection?.on('end', () => {
    if (!closedByUs) lost('the bus closed the connection');
  });

  const queue = new CheckQueue(opts.check);
  const objects: { path: string; iface: HandlerObject }[] = [];
  for (const h of opts.handlers) {
    const path = objectPathOf(h.name);
    if (path) objects.push({ path, iface: new HandlerObject(h.name, configDescription(h), queue, log) });
    else if (!opts.quiet) log.warn({ handler: h.name }, 'handler not offered on D-Bus: its name is not a valid D-Bus path element ([A-Za-z0-9_]); rename it to use it from targetcli');
  }
  const manager = new ObjectManager(objects);
  let timer: NodeJS.Timeout | undefined;
  const timeoutMs = opts.connectTimeoutMs ?? 5000;
  const within = <T>(p: Promise<T>): Promise<T> => {
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`the bus did not answer within ${timeoutMs} ms`)), timeoutMs);
    });
    return Promise.race([p, failed, timeout]).finally(() => clearTimeout(timer));
  };
  try {
    bus.export(ROOT_PATH, manager);
    for (const { path, iface } of objects) bus.export(path, iface);
    const reply = await within(bus.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE));
    if (reply !== dbus.RequestNameReply.PRIMARY_OWNER && reply !== dbus.RequestNameReply.ALREADY_OWNER) {
      const owner = await within(describeOwner(bus)).catch(() => undefined);
      const mine = objects.map((o) => o.iface.subtype);
      const shared = owner?.subtypes.filter((s) => mine.includes(s)) ?? [];
      const who = owner ? `${owner.process}, offering ${owner.subtypes.map((t) => `user:${t}`).join(', ') || 'no handlers'}` : 'another process';
      if (shared.length > 0 && !opts.quiet) {
        log.error(
          { owner: owner?.process, subtypes: shared },
          `the runner owning ${BUS_NAME} serves subtypes tcmu-ts serves too: two runners would open the same devices; serve each subtype in one runner only (tcmu-ts serve --subtypes)`,
        );
      }
      closedByUs = true;
      bus.disconnect();
      const reason = `${BUS_NAME} is owned by ${who}; tcmu-ts leaves it alone, so targetcli lists that runner's handlers, not tcmu-ts's`;
      if (opts.quiet) log.debug({ reason }, 'no D-Bus service: serving without it');
      else log.warn({ reason }, 'no D-Bus service: serving without it');
      return { kind: 'name-taken', reason };
    }
  } catch (err) {
    const reason = (err as Error)?.message ?? String(err);
    say({ reason }, NO_BUS_MESSAGE);
    closedByUs = true;
    bus.disconnect();
    return { kind: 'no-bus', reason };
  }
  connected = true;
  log.info({ name: BUS_NAME, handlers: objects.map((o) => o.iface.subtype) }, 'D-Bus service registered');
  return {
    objectPaths: objects.map((o) => o.path),
    close() {
      connected = false;
      closedByUs = true;
      bus.disconnect();
    },
  };
}

/** Who owns the name (pid and process name) and the user:<subtype> objects it offers: for the log line only. */
async function describeOwner(bus: dbus.MessageBus): Promise<{ process: string; subtypes: string[] }> {
  const daemon = await bus.getProxyObject('org.freedesktop.DBus', '/org/freedesktop/DBus');
  const pid = Number(await daemon.getInterface('org.freedesktop.DBus').GetConnectionUnixProcessID(BUS_NAME));
  let name = 'unknown';
  try {
    name = readFileSync(`/proc/${pid}/comm`, 'latin1').slice(0, 64).trim();
  } catch {
    // another pid namespace, or gone
  }
  let subtypes: string[] = [];
  try {
    const owner = await bus.getProxyObject(BUS_NAME, ROOT_PATH);
    const managed = (await owner.getInterface(OBJECT_MANAGER).GetManagedObjects()) as Record<string, unknown>;
    subtypes = Object.keys(managed)
      .slice(0, 64)
      .map((p) => p.slice(ROOT_PATH.length + 1))
      .filter((t) => /^[A-Za-z0-9_]+$/.test(t));
  } catch {
    // an owner without an ObjectManager
  }
  return { process: `${name} (pid ${pid})`, subtypes };
}
