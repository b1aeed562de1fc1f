/**
 * The systemd notify protocol against a real unix datagram socket: a
 * receiver bound where NOTIFY_SOCKET points (Python's socket module: Node
 * has no unix datagram sockets) records every datagram the daemon's
 * notifier sends through the addon.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { countLuns, statusLine, SystemdNotifier } from '../../src/daemon/notify.js';
import { silentLogger } from '../../src/log.js';

const CI = process.env.CI === 'true';
const PYTHON = '/usr/bin/python3';
const havePython = spawnSync(PYTHON, ['--version'], { stdio: 'ignore' }).status === 0;
if (!havePython && CI) throw new Error(`${PYTHON} is missing: the notify test's receiver needs it`);

/** Bind a datagram socket at `address` (a path or "@abstract") and print each datagram as a JSON line. */
const RECEIVER = `
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print('bound', flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

class Receiver {
  readonly datagrams: string[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static start(address: string): Promise<Receiver> {
    const child = spawn(PYTHON, ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
    const receiver = new Receiver(child);
    return new Promise((resolve, reject) => {
      let buffered = '';
      child.on('error', reject);
      child.stdout!.on('data', (d) => {
        buffered += d;
        let nl: number;
        while ((nl = buffered.indexOf('\n')) >= 0) {
          const line = buffered.slice(0, nl);
          buffered = buffered.slice(nl + 1);
          if (line === 'bound') resolve(receiver);
          else receiver.datagrams.push(JSON.parse(line) as string);
        }
      });
    });
  }

  stop(): void {
    this.child.kill();
  }
}

/** The pings come from timers: poll (bounded) rather than spin event-loop turns. */
async function waitFor(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`gave up waiting for: ${what}`);
}

let receiver: Receiver | undefined;
let notifier: SystemdNotifier | undefined;
afterEach(() => {
  notifier?.close();
  receiver?.stop();
});

describe.skipIf(!havePython && !CI)('systemd notify protocol', () => {
  it('READY with STATUS, WATCHDOG pings from the event loop, STATUS on change, STOPPING', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'tcmu-notify-')), 'notify.sock');
    receiver = await Receiver.start(path);
    const env: NodeJS.ProcessEnv = { NOTIFY_SOCKET: path, WATCHDOG_USEC: '100000', WATCHDOG_PID: String(process.pid) };
    notifier = SystemdNotifier.fromEnv(silentLogger, env);
    expect(notifier?.watchdogUsec).toBe(100000);
    expect(env).toEqual({}); // children must not inherit them
    const luns = [{ state: 'serving' }, { state: 'serving' }, { state: 'failed' }];
    notifier!.ready(() => countLuns(luns));
    await waitFor(() => receiver!.datagrams.length >= 3, 'READY and two watchdog pings');
    expect(receiver.datagrams[0]).toBe(`READY=1\nSTATUS=serving 2 LUNs, 1 failed\nMAINPID=${process.pid}\n`);
    expect(receiver.datagrams[1]).toBe('WATCHDOG=1\n');
    luns.push({ state: 'serving' });
    await waitFor(() => receiver!.datagrams.some((d) => d.includes('STATUS=serving 3 LUNs')), 'the new STATUS');
    expect(receiver.datagrams.find((d) => d.includes('STATUS=serving 3'))).toBe('WATCHDOG=1\nSTATUS=serving 3 LUNs, 1 failed\n');
    notifier!.stopping();
    await waitFor(() => receiver!.datagrams.at(-1)!.startsWith('STOPPING=1'), 'STOPPING');
    expect(receiver.datagrams.at(-1)).toBe('STOPPING=1\nSTATUS=draining LUNs and stopping\n');
    const count = receiver.datagrams.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(receiver.datagrams.length).toBe(count); // no pings after STOPPING
  });

  it('reaches an abstract-namespace socket, and takes no watchdog meant for another pid', async () => {
    const name = `@tcmu-ts-test-${process.pid}-${Date.now()}`;
    receiver = await Receiver.start(name);
    notifier = SystemdNotifier.fromEnv(silentLogger, { NOTIFY_SOCKET: name, WATCHDOG_USEC: '100000', WATCHDOG_PID: '1' });
    expect(notifier?.watchdogUsec).toBe(0);
    notifier!.ready(() => countLuns([]));
    await waitFor(() => receiver!.datagrams.length >= 1, 'READY');
    expect(receiver.datagrams[0]).toBe(`READY=1\nSTATUS=serving 0 LUNs\nMAINPID=${process.pid}\n`);
  });

  it('does nothing without NOTIFY_SOCKET and survives a socket nobody listens on', () => {
    expect(SystemdNotifier.fromEnv(silentLogger, {})).toBeUndefined();
    expect(SystemdNotifier.fromEnv(silentLogger, { NOTIFY_SOCKET: 'relative' })).toBeUndefined();
    const lines: string[] = [];
    const log = { warn: (obj: unknown, msg: string) => lines.push(msg) } as never;
    notifier = SystemdNotifier.fromEnv(log, { NOTIFY_SOCKET: join(tmpdir(), `no-such-socket-${process.pid}`) });
    notifier!.ready(() => countLuns([]));
    notifier!.stopping();
    expect(lines).toEqual(['cannot notify systemd']); // logged once, not thrown
    expect(statusLine({ serving: 1, failed: 0, other: 2 })).toBe('serving 1 LUN, 2 starting or stopping');
  });
});
