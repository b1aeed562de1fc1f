/**
 * The daemon's D-Bus service, assembled: the handlers it serves, each with
 * a CheckConfig that runs the enable-time validation through an opener
 * confined exactly like the LUNs' (same allowed_dirs).
 *
 * It also keeps the registration alive: when there is no bus at start, or
 * the bus goes away later (the system bus restarted), the daemon serves on
 * and registers once the bus is back, logging the first failure and the
 * success, not every try. While the bus socket does not exist it waits for
 * it with an inotify watch (watch-path.ts), so an idle daemon on a machine
 * without a bus never wakes up for D-Bus; while the socket exists but the
 * bus does not answer it tries again with a growing pause (1 s doubling to
 * 30 s). A name owned by another runner (tcmu-runner) is never taken from
 * it: tcmu-ts asks again (every 30 s, without queueing) and gets the name
 * only once that runner has let it go, so targetcli lists tcmu-ts's
 * handlers after tcmu-runner stops.
 */
import { existsSync } from 'node:fs';
import type { Logger } from 'pino';
import { createFileOpener } from '../backstore/confine.js';
import { checkDevConfig } from './check-config.js';
import type { DbusService, DbusUnavailable, HandlerInfo } from './dbus-service.js';
import { describeHandlers } from './handler-info.js';
import { whenPathAppears } from './watch-path.js';

export interface TargetcliServiceOptions {
  log: Logger;
  subtypes: ReadonlySet<string>;
  allowedDirs: readonly string[];
  /** A bus address instead of the system bus (tests). */
  busAddress?: string;
  /** Keep registering when there is no bus or it goes away (default true). */
  reconnect?: boolean;
  /** First pause before trying again, ms (default 1000; tests shorten it). */
  retryMs?: number;
  /** Pause between asks for a name another runner owns, ms (default 30 s; tests shorten it). */
  takenRetryMs?: number;
  /** The system bus socket looked for before loading dbus-next, and connected to (tests). */
  systemBusSocket?: string;
}

/** The registration, kept alive across bus restarts. */
export interface TargetcliService {
  /** The live registration, if the daemon is on the bus right now. */
  readonly current: DbusService | undefined;
  /** Stop retrying and leave the bus. */
  close(): void;
}

const MAX_RETRY_MS = 30_000;
/** Logged when there is no bus to register on, by this file or by dbus-service.ts. */
export const NO_BUS_MESSAGE = 'no D-Bus service: targetcli will not list tcmu-ts handlers; serving without it';
/** Where dbus-next finds the system bus unless DBUS_SYSTEM_BUS_ADDRESS says otherwise. */
const SYSTEM_BUS_SOCKET = '/var/run/dbus/system_bus_socket';

/**
 * No system bus to talk to (no socket, no address in the environment): said
 * without loading dbus-next, which is a large share of a daemon start's
 * module reads, and on hosts and VMs without a bus that start is all it costs.
 */
function systemBusAbsent(busAddress: string | undefined, socket = SYSTEM_BUS_SOCKET): string | undefined {
  if (busAddress || process.env.DBUS_SYSTEM_BUS_ADDRESS) return undefined;
  return existsSync(socket) ? undefined : `no system bus: ${socket} does not exist`;
}

export async function startTargetcliService(opts: TargetcliServiceOptions): Promise<TargetcliService> {
  const files = createFileOpener(opts.allowedDirs);
  const log = opts.log;
  // Described (every handler module loaded) only once there is a bus to offer them on.
  let handlers: HandlerInfo[] | undefined;
  const reconnect = opts.reconnect !== false;
  const firstPause = opts.retryMs ?? 1000;
  let current: DbusService | undefined;
  let closed = false;
  let timer: NodeJS.Timeout | undefined;
  let stopWatch: (() => void) | undefined;
  let pause = firstPause;
  const socket = opts.systemBusSocket ?? SYSTEM_BUS_SOCKET;

  const attempt = async (quiet: boolean): Promise<void> => {
    if (closed) return;
    const absent = systemBusAbsent(opts.busAddress, socket);
    let result: DbusService | DbusUnavailable;
    if (absent) {
      const fields = { component: 'dbus', reason: absent };
      if (quiet) log.debug(fields, NO_BUS_MESSAGE);
      else log.info(fields, NO_BUS_MESSAGE);
      result = { kind: 'no-bus', reason: absent };
    } else {
      handlers ??= await describeHandlers(opts.subtypes, files);
      const { tryDbusService } = await import('./dbus-service.js');
      result = await tryDbusService({
        log,
        handlers,
        check: (devConfig, subtype) => checkDevConfig(devConfig, { files, log, subtype }),
        busAddress: opts.busAddress ?? (opts.systemBusSocket ? `unix:path=${opts.systemBusSocket}` : undefined),
        quiet,
        onLost: () => {
          current = undefined;
          pause = firstPause;
          retryNoBus();
        },
      });
    }
    if (closed) {
      if (!('kind' in result)) result.close();
      return;
    }
    if ('kind' in result) {
      if (result.kind === 'name-taken') schedule(opts.takenRetryMs ?? MAX_RETRY_MS);
      else if (!absent || !watchForSocket()) retryNoBus();
      return;
    }
    current = result;
    pause = firstPause;
  };
  const schedule = (delay: number) => {
    if (!reconnect || closed || timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      attempt(true).catch((err) => log.error({ err }, 'D-Bus registration failed'));
    }, delay);
    timer.unref();
  };
  /** No socket: try again once it appears (no timer). False if no watch could be set. */
  const watchForSocket = (): boolean => {
    if (!reconnect || closed) return true;
    if (stopWatch) return true;
    let over = false; // fired or failed, possibly before whenPathAppears returns
    const retry = () => {
      over = true;
      stopWatch = undefined;
      pause = firstPause;
      attempt(true).catch((err) => log.error({ err }, 'D-Bus registration failed'));
    };
    try {
      const stop = whenPathAppears(socket, retry, (err) => {
        over = true;
        stopWatch = undefined;
        log.debug({ err, component: 'dbus' }, 'cannot watch for the bus socket; trying on a timer');
        retryNoBus();
      });
      if (!over) stopWatch = stop;
      return true;
    } catch (err) {
      log.debug({ err, component: 'dbus' }, 'cannot watch for the bus socket; trying on a timer');
      return false;
    }
  };
  /** No bus: try again after `pause`, doubling it up to MAX_RETRY_MS. */
  const retryNoBus = () => {
    schedule(pause);
    pause = Math.min(pause * 2, MAX_RETRY_MS);
  };

  await attempt(false);
  return {
    get current() {
      return current;
    },
    close() {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      stopWatch?.();
      stopWatch = undefined;
      current?.close();
      current = undefined;
    },
  };
}
