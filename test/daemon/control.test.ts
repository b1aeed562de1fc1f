import { execFile } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, statSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { controlRequest, MAX_REQUEST_LINE, startControlServer } from '../../src/daemon/control.js';

/** Raw exchange: write `payload`, collect every line the server sends until it closes or `lines` arrived. */
function rawExchange(path: string, payload: string, lines: number): Promise<any[]> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let got = '';
    const done = () => {
      sock.destroy();
      resolve(got.split('\n').filter(Boolean).map((l) => JSON.parse(l)));
    };
    sock.on('connect', () => sock.write(payload));
    sock.on('data', (d) => {
      got += d;
      if (got.split('\n').length > lines) done();
    });
    sock.on('close', done);
    sock.on('error', reject);
  });
}

/**
 * A separate process streams `total` bytes without a newline at the socket
 * (so the test process only measures the server side) and reports how much
 * it got rid of and what the server answered.
 */
function streamWithoutNewline(path: string, total: number, uid?: number): Promise<{ sent: number; answer: string }> {
  const script = `
    const s = require('net').createConnection({ path: process.argv[1], allowHalfOpen: true }); // keep writing after the server's answer
    const chunk = Buffer.alloc(65536, 0x61); let sent = 0, answer = '';
    const pump = () => { while (sent < ${total}) { sent += chunk.length; if (!s.write(chunk)) return s.once('drain', pump); } s.end(); };
    s.on('connect', pump); s.on('data', (d) => answer += d); s.on('error', () => {});
    s.on('close', () => console.log(JSON.stringify({ sent, answer })));`;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script, path], { uid, timeout: 30_000 }, (err, stdout) => (err ? reject(err) : resolve(JSON.parse(stdout))));
  });
}

describe('control socket', () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
  const servers: Array<{ close: () => void }> = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it('answers requests, reports handler errors with their code, and guards a single instance', async () => {
    servers.push(
      await startControlServer(path, async (req) => {
        if (req.cmd === 'status') return { pid: 42, luns: [] };
        throw Object.assign(new Error(`unknown control command ${JSON.stringify(req.cmd)}`), { code: 'EINVAL' });
      }),
    );
    await expect(controlRequest(path, { cmd: 'status' })).resolves.toEqual({ pid: 42, luns: [] });
    await expect(controlRequest(path, { cmd: 'nope' })).rejects.toMatchObject({
      message: 'unknown control command "nope"',
      code: 'EINVAL',
    });
    await expect(startControlServer(path, async () => null)).rejects.toMatchObject({ code: 'EALREADY' });
  });

  it('replaces a stale socket left by a dead daemon', async () => {
    const stale = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    const first = await startControlServer(stale, async () => 'first');
    // Simulate a crash: stop listening without unlinking the socket file.
    await new Promise<void>((resolve) => first.close(() => resolve()));
    const { writeFileSync } = await import('node:fs');
    writeFileSync(stale, ''); // a leftover file where the socket was
    const second = await startControlServer(stale, async () => 'second');
    servers.push(second);
    await expect(controlRequest(stale, { cmd: 'x' })).resolves.toBe('second');
  });

  it('says clearly when no daemon runs', async () => {
    await expect(controlRequest(join(tmpdir(), 'no-such-tcmu-ts.sock'), { cmd: 'status' })).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });

  it('never shows the socket with a wider mode than 0600, even under umask 0, and leaves no staging directory', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-ctl-'));
    const sock = join(dir, 'control.sock');
    const old = process.umask(0);
    try {
      servers.push(await startControlServer(sock, async () => 'ok'));
    } finally {
      process.umask(old);
    }
    expect(statSync(sock).mode & 0o777).toBe(0o600);
    expect(readdirSync(dir)).toEqual(['control.sock']);
    await expect(controlRequest(sock, { cmd: 'x' })).resolves.toBe('ok');
  });

  it('removes its socket when closed', async () => {
    const sock = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    const server = await startControlServer(sock, async () => 'ok');
    await new Promise<void>((resolve) => server.close(() => resolve()));
    expect(existsSync(sock)).toBe(false);
  });

  it('refuses an empty path (the socket is the single-instance guard), and so does the daemon', async () => {
    await expect(startControlServer('', async () => 'ok')).rejects.toMatchObject({ code: 'EINVAL' });
    const { serveForever } = await import('../../src/daemon/serve.js');
    const { createLogger } = await import('../../src/log.js');
    await expect(serveForever({ log: createLogger('silent'), subtypes: new Set(), controlSocket: '' })).rejects.toMatchObject({
      code: 'EINVAL',
      message: expect.stringMatching(/control socket path is required/),
    });
  });

  it('answers pipelined requests in order and refuses non-object JSON', async () => {
    const sock = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    servers.push(await startControlServer(sock, async (req) => req.n));
    const replies = await rawExchange(sock, '{"n":1}\n[1]\nnot json\n{"n":2}\n', 4);
    expect(replies).toEqual([
      { result: 1 },
      { error: 'request must be a JSON object', code: 'EINVAL' },
      { error: 'request is not valid JSON', code: 'EINVAL' },
      { result: 2 },
    ]);
  });

  it('closes a connection whose request line exceeds 64 KiB, accepting a line of exactly the limit', async () => {
    const sock = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    servers.push(await startControlServer(sock, async (req) => String(req.pad).length));
    const pad = 'x'.repeat(MAX_REQUEST_LINE - '{"pad":""}'.length);
    expect(await rawExchange(sock, `{"pad":"${pad}"}\n`, 1)).toEqual([{ result: pad.length }]);
    expect(await rawExchange(sock, `{"pad":"${pad}x"}\n`, 1)).toEqual([{ error: `request line longer than ${MAX_REQUEST_LINE} bytes`, code: 'E2BIG' }]);
  });

  it('keeps memory bounded against 64 MiB without a newline', async () => {
    const sock = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    let calls = 0;
    servers.push(await startControlServer(sock, async () => ++calls));
    global.gc?.();
    const before = process.memoryUsage().rss;
    const { sent, answer } = await streamWithoutNewline(sock, 64 * 2 ** 20);
    const grown = process.memoryUsage().rss - before;
    // Before the bound the daemon buffered it all (288 MiB RSS growth for 64 MiB).
    expect(JSON.parse(answer)).toEqual({ error: `request line longer than ${MAX_REQUEST_LINE} bytes`, code: 'E2BIG' });
    expect(calls).toBe(0);
    expect(grown).toBeLessThan(32 * 2 ** 20);
    console.log(`control socket: writer got ${sent} bytes into the socket before the server closed it; server RSS grew ${(grown / 2 ** 20).toFixed(1)} MiB`);
  });

  it('refuses a peer whose uid the access rule does not allow (SO_PEERCRED)', async () => {
    const sock = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    let calls = 0;
    const seen: number[] = [];
    servers.push(
      await startControlServer(sock, async () => ++calls, {
        allowUid: (uid) => {
          seen.push(uid);
          return false;
        },
      }),
    );
    await expect(controlRequest(sock, { cmd: 'status' })).rejects.toMatchObject({
      code: 'EACCES',
      message: expect.stringMatching(/^permission denied: uid \d+ may not use the tcmu-ts control socket/),
    });
    expect(seen).toEqual([process.getuid!()]);
    expect(calls).toBe(0);
  });

  it.runIf(process.getuid?.() === 0)('as root: refuses another user even when the socket file was opened up to everyone', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-ctl-'));
    chmodSync(dir, 0o755);
    const sock = join(dir, 'control.sock');
    let calls = 0;
    servers.push(await startControlServer(sock, async () => ++calls));
    chmodSync(sock, 0o666); // an admin loosened the mode: the uid check still holds
    const { answer } = await streamWithoutNewline(sock, 0, 65534);
    expect(JSON.parse(answer)).toEqual({
      error: "permission denied: uid 65534 may not use the tcmu-ts control socket (root or the daemon's user only)",
      code: 'EACCES',
    });
    expect(calls).toBe(0);
    await expect(controlRequest(sock, { cmd: 'status' })).resolves.toBe(1); // root still may
  });
});
