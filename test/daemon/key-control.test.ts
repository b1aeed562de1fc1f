/**
 * Memory keys over the control socket: `tcmu-ts key add|list|remove` (the
 * real CLI, a child process reading the key from stdin) against a real
 * control socket whose `key` request reaches the daemon's KeyRing; a crypt
 * LUN (FakeNode: the simulated kernel) that could not open without its key
 * opens after `key add`. Every log line (trace level), the status, and
 * every stdout/stderr is then searched for the key bytes (raw, hex, base64).
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, closeSync, ftruncateSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import type { Server as NetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatLuks } from '../../src/crypto/luks/format.js';
import { openStack } from '../../src/backstore/registry.js';
import { toLunStore } from '../../src/backstore/lun-store.js';
import { KeyRing } from '../../src/config/keyring.js';
import { startControlServer } from '../../src/daemon/control.js';
import { keyControl, MAX_SOCKET_KEY_BYTES } from '../../src/daemon/key-control.js';
import { Server } from '../../src/daemon/serve.js';
import { drainUnitAttentions, FakeNode, readBlocks, type FakeDevice } from './fake-node.js';

const ROOT = resolve(import.meta.dirname, '../..');
const MiB = 1 << 20;
const dir = mkdtempSync(join(tmpdir(), 'tcmu-key-control-'));
const keyDir = join(dir, 'keys');
const sock = join(dir, 'control.sock');
// Binary, with a trailing newline that must not be stripped (cryptsetup --key-file semantics).
const KEY = Buffer.concat([randomBytes(40), Buffer.from('\n')]);
const logLines: string[] = [];
const outputs: string[] = [];
let node: FakeNode;
let server: Server;
let control: NetServer;
let dev: FakeDevice;

/** Run the real CLI; resolves with its exit code and output (kept for the leak search). */
function cli(args: string[], stdin?: Buffer): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, fail) => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/cli/main.ts'), ...args, '--socket', sock], { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString('latin1')));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString('latin1')));
    child.on('error', fail);
    child.on('close', (code) => {
      outputs.push(stdout, stderr);
      done({ code, stdout, stderr });
    });
    child.stdin.end(stdin ?? Buffer.alloc(0));
  });
}

/** A LUKS2 image whose first MiB of plaintext is 0xa5 (written through the layer with the key in memory). */
async function makeImage(path: string, size: number): Promise<void> {
  const fd = openSync(path, 'w');
  ftruncateSync(fd, size);
  await formatLuks(async (o, b) => void writeSync(fd, b, 0, b.length, o), size, {
    version: 2,
    passphrase: KEY,
    kdf: { type: 'pbkdf2', hash: 'sha256', iterations: 1000 },
    digestIterations: 1000,
  });
  closeSync(fd);
  const ring = new KeyRing(keyDir);
  ring.add('k1', KEY);
  const store = toLunStore(
    await openStack([{ handler: 'file', config: path }, { handler: 'crypt', config: '', options: { key: 'k1' } }], {
      blockSize: 512,
      readOnly: false,
      log: pino({ level: 'silent' }),
      keys: ring,
    }),
  );
  await store.write(0, [Buffer.alloc(MiB, 0xa5)], { fua: true });
  await store.close();
  ring.clear();
}

beforeAll(async () => {
  mkdirSync(keyDir, { mode: 0o700 });
  node = new FakeNode();
  const img = join(dir, 'enc.img');
  await makeImage(img, 32 * MiB);
  dev = node.add({ name: 'enc', devConfig: `crypt/;key=k1>file/${img}`, size: 16 * MiB });
  const log = pino({ level: 'trace' }, { write: (s: string) => void logLines.push(s) });
  server = new Server({ log, subtypes: new Set(['file', 'crypt']), uioRoot: node.uioRoot, configfsRoot: node.configfsRoot, keyDir });
  // The daemon's dispatch for `key` (serveForever's switch sends {cmd: 'key'} to keyControl with its KeyRing).
  control = await startControlServer(sock, async (req) => {
    if (req.cmd !== 'key') throw Object.assign(new Error('only key requests here'), { code: 'EINVAL' });
    return keyControl(server.keys, req, () => server.scan());
  });
}, 60_000);

afterAll(async () => {
  control?.close();
  await server?.stop();
  node?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('tcmu-ts key add / list / remove over the control socket', () => {
  it('a crypt LUN without its key stays closed; after `key add` from stdin it opens and reads its data', async () => {
    expect(await server.scan()).toBe(0);
    expect(logLines.join('')).toMatch(/key \\"k1\\": key file \S+ does not exist/);

    const add = await cli(['key', 'add', 'k1'], KEY);
    // The add rescans: the LUN that waited for the key opens.
    expect(add).toMatchObject({ code: 0, stdout: 'key k1 added (memory only; a daemon restart forgets it); 1 LUN(s) that were waiting opened\n', stderr: '' });
    expect(server.keys.memoryKeyNames()).toEqual(['k1']);
    const held = server.keys.get('k1');
    expect(held.equals(KEY)).toBe(true); // all bytes, the trailing newline kept
    held.fill(0);
    expect(await cli(['key', 'list'])).toMatchObject({ code: 0, stdout: 'k1\n' });

    expect(server.list().map((l) => [l.id, l.state])).toEqual([['user_1/enc', 'serving']]);
    await drainUnitAttentions(dev);
    const data = await readBlocks(dev, 0, 8);
    expect(data.equals(Buffer.alloc(4096, 0xa5))).toBe(true);

    // Adding again replaces; --key-file reads a file the same way.
    const keyFile = join(dir, 'k1.bin');
    writeFileSync(keyFile, KEY, { mode: 0o600 });
    expect(await cli(['key', 'add', 'k1', '--key-file', keyFile])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^key k1 replaced/) });
    rmSync(keyFile);
  }, 120_000);

  it('refusals are clear and name no key byte', async () => {
    const badName = await cli(['key', 'add', '../k1'], KEY);
    expect(badName.code).toBe(1);
    expect(badName.stderr).toMatch(/key name "\.\.\/k1" is invalid/);
    const empty = await cli(['key', 'add', 'k2'], Buffer.alloc(0));
    expect(empty).toMatchObject({ code: 1, stderr: 'tcmu-ts: stdin is empty: nothing to use as the key\n' });
    const big = await cli(['key', 'add', 'k2'], Buffer.concat([KEY, Buffer.alloc(MAX_SOCKET_KEY_BYTES)]));
    expect(big.code).toBe(1);
    expect(big.stderr).toMatch(/more than 32768 bytes/);
    // Straight to the socket: malformed base64 and an unknown op.
    await expect(keyControl(server.keys, { cmd: 'key', op: 'add', name: 'k2', key: `${KEY.toString('hex')}!` })).rejects.toThrow(/"key" must be the key's bytes in standard base64$/);
    await expect(keyControl(server.keys, { cmd: 'key', op: 'add', name: 'k2', key: '' })).rejects.toThrow(/key "k2" is empty/);
    await expect(keyControl(server.keys, { cmd: 'key', op: 'get', name: 'k1' })).rejects.toThrow(/unknown op "get"/);
    expect(server.keys.memoryKeyNames()).toEqual(['k1']);
  }, 60_000);

  it('remove forgets the key (the open LUN keeps serving); a second remove says there is none', async () => {
    expect(await cli(['key', 'remove', 'k1'])).toMatchObject({ code: 0, stdout: 'key k1 removed\n' });
    expect(server.keys.memoryKeyNames()).toEqual([]);
    expect(() => server.keys.get('k1')).toThrow(/does not exist/);
    expect(await cli(['key', 'remove', 'k1'])).toMatchObject({ code: 1, stderr: 'no memory key named k1\n' });
    expect(await cli(['key', 'list'])).toMatchObject({ code: 0, stdout: '' });
    expect((await readBlocks(dev, 0, 1)).equals(Buffer.alloc(512, 0xa5))).toBe(true);
  }, 60_000);

  it('no key byte in any log line, the status, or any command output', () => {
    const status = JSON.stringify(server.list());
    expect(status).toContain('enc');
    const haystacks = [...logLines, status, ...outputs];
    expect(logLines.length).toBeGreaterThan(3);
    const body = KEY.subarray(0, 40);
    const needles = [body.toString('hex'), body.toString('base64').slice(0, 24), KEY.toString('base64'), body.subarray(0, 12).toString('latin1'), [...body.subarray(0, 8)].join(',')]; // the last: a Buffer as pino's JSON
    for (const hay of haystacks) for (const needle of needles) expect(hay.includes(needle)).toBe(false);
  });
});
