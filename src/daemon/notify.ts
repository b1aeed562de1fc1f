/**
 * systemd's notify protocol (Type=notify), spoken by the daemon itself:
 * datagrams of newline-separated KEY=value lines to $NOTIFY_SOCKET.
 *   READY=1     once every LUN found at start is served (the unit is "active")
 *   STATUS=...  LUN counts, shown by `systemctl status`, refreshed as they change
 *   STOPPING=1  when a stop signal starts the drain
 *   WATCHDOG=1  every WATCHDOG_USEC/2 from a timer on the event loop: a loop
 *               wedged by a runaway handler stops the pings, and systemd
 *               kills and restarts the daemon (WatchdogSec= in the unit)
 * Without $NOTIFY_SOCKET (not started by systemd) nothing is sent. A failed
 * send is logged once and never stops the daemon.
 */
import { Buffer } from 'node:buffer';
import type { Logger } from 'pino';
import { native } from '../native.js';

export interface NotifyTransport {
  send(socketPath: string, message: Buffer): void;
}

const nativeTransport: NotifyTransport = {
  send: (path, message) => native().unixDatagramSend(path, message),
};

export interface LunCounts {
  serving: number;
  failed: number;
  other: number;
}

export function statusLine(counts: LunCounts): string {
  const parts = [`serving ${counts.serving} LUN${counts.serving === 1 ? '' : 's'}`];
  if (counts.failed > 0) parts.push(`${counts.failed} failed`);
  if (counts.other > 0) parts.push(`${counts.other} starting or stopping`);
  return parts.join(', ');
}

/** How often STATUS is re-checked when no watchdog is asked for. */
const STATUS_PERIOD_MS = 5000;

export class SystemdNotifier {
  private timer?: NodeJS.Timeout;
  private lastStatus = '';
  private failed = false;

  private constructor(
    private readonly socketPath: string,
    /** Watchdog interval in microseconds, or 0 when systemd asked for none. */
    readonly watchdogUsec: number,
    private readonly log: Logger,
    private readonly transport: NotifyTransport,
  ) {}

  /**
   * From the environment systemd sets; undefined when not under systemd.
   * NOTIFY_SOCKET and the WATCHDOG_ variables are removed from the
   * environment, so no child process mistakes them for its own.
   */
  static fromEnv(log: Logger, env: NodeJS.ProcessEnv = process.env, transport: NotifyTransport = nativeTransport): SystemdNotifier | undefined {
    const socketPath = env.NOTIFY_SOCKET;
    const usec = Number(env.WATCHDOG_USEC ?? 0);
    const pid = env.WATCHDOG_PID;
    delete env.NOTIFY_SOCKET;
    delete env.WATCHDOG_USEC;
    delete env.WATCHDOG_PID;
    if (!socketPath) return undefined;
    if (!socketPath.startsWith('/') && !socketPath.startsWith('@')) {
      log.warn({ NOTIFY_SOCKET: socketPath.slice(0, 120) }, 'NOTIFY_SOCKET is neither a path nor an abstract socket; not notifying systemd');
      return undefined;
    }
    // The watchdog is ours only if systemd named no other pid.
    const watchdog = Number.isSafeInteger(usec) && usec > 0 && (pid === undefined || Number(pid) === process.pid) ? usec : 0;
    return new SystemdNotifier(socketPath, watchdog, log, transport);
  }

  private send(lines: string[]): void {
    try {
      this.transport.send(this.socketPath, Buffer.from(`${lines.join('\n')}\n`));
      this.failed = false;
    } catch (err) {
      if (!this.failed) this.log.warn({ err: (err as Error).message, socket: this.socketPath }, 'cannot notify systemd');
      this.failed = true;
    }
  }

  /**
   * The daemon serves: READY=1 with the first STATUS, then keep STATUS
   * current and, when asked for, ping the watchdog from the event loop.
   */
  ready(counts: () => LunCounts): void {
    this.lastStatus = statusLine(counts());
    this.send(['READY=1', `STATUS=${this.lastStatus}`, `MAINPID=${process.pid}`]);
    const periodMs = this.watchdogUsec > 0 ? Math.max(1, Math.floor(this.watchdogUsec / 2000)) : STATUS_PERIOD_MS;
    this.timer = setInterval(() => this.tick(counts), periodMs);
    this.timer.unref();
  }

  private tick(counts: () => LunCounts): void {
    const lines: string[] = [];
    if (this.watchdogUsec > 0) lines.push('WATCHDOG=1');
    const status = statusLine(counts());
    if (status !== this.lastStatus) {
      this.lastStatus = status;
      lines.push(`STATUS=${status}`);
    }
    if (lines.length > 0) this.send(lines);
  }

  /** A stop signal arrived: systemd shows "deactivating" while the LUNs drain. */
  stopping(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.send(['STOPPING=1', 'STATUS=draining LUNs and stopping']);
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** LUN counts from the daemon's status list. */
export function countLuns(states: Iterable<{ state: string }>): LunCounts {
  const counts: LunCounts = { serving: 0, failed: 0, other: 0 };
  for (const { state } of states) {
    if (state === 'serving') counts.serving++;
    else if (state === 'failed') counts.failed++;
    else counts.other++;
  }
  return counts;
}
