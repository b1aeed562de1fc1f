/**
 * A private dbus-daemon for tests: `dbus-daemon --print-address` with either
 * the session configuration or a given config file, stopped afterwards.
 * `hasDbusDaemon()` tells whether the tool exists; tests skip without it
 * locally and fail under CI=true (scripts/setup.sh installs it).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';

export interface PrivateBus {
  address: string;
  stop(): void;
}

export function hasDbusDaemon(): boolean {
  return spawnSync('dbus-daemon', ['--version'], { stdio: 'ignore' }).status === 0;
}

export function startPrivateBus(args: string[] = ['--session']): Promise<PrivateBus> {
  return new Promise((resolve, reject) => {
    const child: ChildProcess = spawn('dbus-daemon', [...args, '--nofork', '--print-address=1'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    const fail = (why: string) => reject(new Error(`dbus-daemon ${args.join(' ')}: ${why}: ${err.trim()}`));
    child.stderr!.on('data', (d) => (err += d));
    child.on('error', (e) => fail(e.message));
    child.on('exit', (code) => fail(`exited with ${code}`));
    child.stdout!.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const address = out.slice(0, nl).trim();
      child.removeAllListeners('exit');
      resolve({ address, stop: () => child.kill('SIGTERM') });
    });
  });
}
