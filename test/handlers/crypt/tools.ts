/**
 * Helpers for the crypt tests: host tools (cryptsetup, qemu-img/qemu-io) as
 * oracles, a private key directory, and raw file access for our LUKS code.
 * A missing tool fails loudly under CI=true and skips with a warning only on
 * a developer machine without it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, closeSync, fstatSync, mkdirSync, mkdtempSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function haveTool(cmd: string, arg = '--version'): boolean {
  const ok = spawnSync(cmd, [arg], { stdio: 'ignore' }).status === 0;
  if (!ok && process.env.CI) throw new Error(`${cmd} is required in CI (scripts/setup.sh installs it)`);
  if (!ok) console.warn(`crypt tests: ${cmd} not found, skipping the tests that need it`);
  return ok;
}

export function run(cmd: string, args: string[], input?: Buffer): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input, maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.status}): ${r.stderr}${r.error ?? ''}`);
  return r.stdout;
}

export function tryRun(cmd: string, args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** A temp dir with a private key directory `keys/` (0700) holding `name` (0600). */
export function workDir(): { dir: string; keyDir: string; writeKey(name: string, bytes: Buffer, mode?: number): string } {
  const dir = mkdtempSync(join(tmpdir(), 'tcmu-crypt-'));
  const keyDir = join(dir, 'keys');
  mkdirSync(keyDir, { mode: 0o700 });
  chmodSync(keyDir, 0o700);
  return {
    dir,
    keyDir,
    writeKey(name, bytes, mode = 0o600) {
      const p = join(keyDir, name);
      writeFileSync(p, bytes, { mode });
      chmodSync(p, mode);
      return p;
    },
  };
}

/** cryptsetup's volume key of `img`, unlocked with `keyFile` (hex). */
export function cryptsetupVolumeKey(img: string, keyFile: string): string {
  const out = run('cryptsetup', ['luksDump', '--dump-volume-key', '--batch-mode', '--key-file', keyFile, img]);
  const m = /MK dump:\s*((?:[0-9a-f]{2}\s*)+)/.exec(out);
  if (!m) throw new Error(`no volume key in cryptsetup output for ${img}`);
  return m[1]!.replace(/\s+/g, '');
}

/** Fast cryptsetup luksFormat flavours of the acceptance list. */
export const CRYPTSETUP_FORMATS = {
  'LUKS2 argon2id 512': ['--type', 'luks2', '--pbkdf', 'argon2id', '--pbkdf-memory', '32768', '--iter-time', '100', '--sector-size', '512'],
  'LUKS2 argon2i 512 aes-128': ['--type', 'luks2', '--pbkdf', 'argon2i', '--pbkdf-memory', '32768', '--iter-time', '100', '--sector-size', '512', '--key-size', '256'],
  'LUKS2 pbkdf2-sha512 4096': ['--type', 'luks2', '--pbkdf', 'pbkdf2', '--hash', 'sha512', '--iter-time', '100', '--sector-size', '4096'],
  'LUKS2 pbkdf2 4096': ['--type', 'luks2', '--pbkdf', 'pbkdf2', '--iter-time', '100', '--sector-size', '4096'],
  LUKS1: ['--type', 'luks1', '--iter-time', '100'],
  'LUKS1 sha1': ['--type', 'luks1', '--iter-time', '100', '--hash', 'sha1'],
} as const;

export function luksFormat(img: string, keyFile: string, flags: readonly string[], sizeMiB = 20): void {
  const fd = openSync(img, 'w');
  closeSync(fd);
  run('truncate', ['-s', `${sizeMiB}M`, img]);
  run('cryptsetup', ['luksFormat', '-q', ...flags, '--key-file', keyFile, img]);
}

/** Byte-range access to a file, as the LUKS reader wants it. */
export function fileReader(path: string): { read: (o: number, l: number) => Promise<Buffer>; size: number; close(): void } {
  const fd = openSync(path, 'r');
  return {
    size: fstatSync(fd).size,
    async read(o, l) {
      const b = Buffer.alloc(l);
      readSync(fd, b, 0, l, o);
      return b;
    },
    close: () => closeSync(fd),
  };
}

export function fileWriter(path: string, size: number): { write: (o: number, b: Buffer) => Promise<void>; close(): void } {
  const fd = openSync(path, 'w+');
  run('truncate', ['-s', String(size), path]);
  return {
    async write(o, b) {
      writeSync(fd, b, 0, b.length, o);
    },
    close: () => closeSync(fd),
  };
}
