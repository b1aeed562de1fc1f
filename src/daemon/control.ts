/**
 * The daemon's control socket: a unix stream socket speaking one JSON object
 * per line, request -> response. It is also the single-instance guard: a
 * daemon that can connect to an existing socket refuses to start.
 */
import { createServer, createConnection, type Server as NetServer, type Socket } from 'node:net';
import { chmodSync, mkdirSync, mkdtempSync, renameSync, rmSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { native } from '../native.js';

export const DEFAULT_CONTROL_SOCKET = '/run/tcmu-ts/control.sock';

export type ControlHandler = (request: Record<string, unknown>) => Promise<unknown>;

/** A status of thousands of LUNs fits; anything larger is not a tcmu-ts daemon answering. */
const MAX_RESPONSE = 64 * 2 ** 20;

/** Send one request to a running daemon; rejects with code ENOENT/ECONNREFUSED when none runs. */
export function controlRequest(path: string, request: Record<string, unknown>, timeoutMs = 30_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buffered = '';
    // 0: no limit (an online compaction runs as long as the data it moves).
    const timer =
      timeoutMs > 0
        ? setTimeout(() => {
            sock.destroy();
            reject(new Error(`no answer from tcmu-ts daemon at ${path} within ${timeoutMs} ms`));
          }, timeoutMs)
        : undefined;
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) {
        if (buffered.length > MAX_RESPONSE) {
          clearTimeout(timer);
          sock.destroy();
          reject(Object.assign(new Error(`answer from ${path} longer than ${MAX_RESPONSE} bytes`), { code: 'E2BIG' }));
        }
        return;
      }
      clearTimeout(timer);
      sock.end();
      let response: { error?: string; code?: string; result?: unknown };
      try {
        response = JSON.parse(buffered.slice(0, nl));
      } catch {
        return reject(Object.assign(new Error(`answer from ${path} is not JSON`), { code: 'EPROTO' }));
      }
      if (response.error) reject(Object.assign(new Error(response.error), { code: response.code }));
      else resolve(response.result);
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
}

async function isDaemonListening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection(path);
    sock.on('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.on('error', () => resolve(false));
  });
}

/** Longest request line a client may send; a longer one gets an error and the connection is closed. */
export const MAX_REQUEST_LINE = 64 * 1024;
/** Requests a client may queue on one connection while earlier ones run. */
const MAX_QUEUED_REQUESTS = 16;

export interface ControlServerOptions {
  /**
   * Who may use the socket, by the peer's uid (SO_PEERCRED). Default: root
   * and the daemon's own uid. The socket can delete LUNs and revert
   * snapshots, so file permissions alone (which an admin may loosen) are not
   * the only gate.
   */
  allowUid?: (uid: number) => boolean;
}

const defaultAllowUid = (uid: number) => uid === 0 || uid === process.getuid?.();

/**
 * Listen on `path` with no moment where another user could connect: the
 * socket is bound inside a fresh 0700 directory next to `path`, made 0600,
 * and only then renamed into place (rename is atomic, so `path` never names
 * a socket with a wider mode, whatever the umask). Every accepted
 * connection is then checked against the peer's credentials.
 */
export async function startControlServer(path: string, handler: ControlHandler, opts: ControlServerOptions = {}): Promise<NetServer> {
  if (!path) throw Object.assign(new Error('the control socket path cannot be empty (it is the single-instance guard)'), { code: 'EINVAL' });
  if (await isDaemonListening(path)) {
    throw Object.assign(new Error(`another tcmu-ts daemon is already running (control socket ${path} answers)`), {
      code: 'EALREADY',
    });
  }
  const allowUid = opts.allowUid ?? defaultAllowUid;
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  const staging = mkdtempSync(join(dirname(path), '.control-')); // mode 0700
  const staged = join(staging, 's');
  const server = createServer((sock) => {
    if (!peerAllowed(sock, allowUid)) return;
    serveConnection(sock, handler);
  });
  server.maxConnections = 64;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(staged, () => resolve());
    });
    chmodSync(staged, 0o600); // root only: the socket can delete LUNs
    renameSync(staged, path); // replaces a stale socket left by a daemon that died
  } catch (err) {
    server.close();
    rmSync(staging, { recursive: true, force: true });
    throw err;
  }
  rmdirSync(staging);
  const ino = statSync(path).ino;
  // libuv unlinks the path it bound (now gone); remove the renamed socket
  // ourselves, unless another daemon has replaced it since.
  server.on('close', () => {
    try {
      if (statSync(path).ino === ino) unlinkSync(path);
    } catch {
      /* already gone */
    }
  });
  return server;
}

/** SO_PEERCRED check; refuses (with one error line) and closes a connection from anyone else. */
function peerAllowed(sock: Socket, allowUid: (uid: number) => boolean): boolean {
  const fd = (sock as unknown as { _handle?: { fd?: number } })._handle?.fd;
  let uid = -1;
  try {
    if (typeof fd === 'number' && fd >= 0) uid = native().peerCred(fd).uid;
  } catch {
    /* unknown peer: refused below */
  }
  if (uid >= 0 && allowUid(uid)) return true;
  sock.on('error', () => undefined);
  const who = uid >= 0 ? `uid ${uid}` : 'an unidentified peer';
  sock.end(`${JSON.stringify({ error: `permission denied: ${who} may not use the tcmu-ts control socket (root or the daemon's user only)`, code: 'EACCES' })}\n`);
  return false;
}

/**
 * One JSON request per line, answered in order. Memory per connection is
 * bounded: a line longer than MAX_REQUEST_LINE or more than
 * MAX_QUEUED_REQUESTS waiting requests get an error and the connection is
 * closed (what else the client sends is dropped, not buffered).
 */
function serveConnection(sock: Socket, handler: ControlHandler): void {
  let pending: Buffer[] = [];
  let pendingLength = 0;
  const queue: string[] = [];
  let busy = false;
  let closed = false;

  const reply = (body: Record<string, unknown>) => {
    if (!sock.destroyed && !closed) sock.write(`${JSON.stringify(body)}\n`);
  };
  const refuse = (error: string, code: string) => {
    if (closed) return;
    reply({ error, code });
    closed = true;
    pending = [];
    queue.length = 0;
    // Half-close, stop reading (the kernel's socket buffer, not our memory,
    // holds what the client still sends) and close a moment later: destroying
    // now would make a client that is still writing fail with EPIPE before it
    // reads why.
    sock.end();
    sock.pause();
    setTimeout(() => sock.destroy(), 1000).unref();
  };
  const runNext = () => {
    if (busy || closed) return;
    const line = queue.shift();
    if (line === undefined) return;
    let request: Record<string, unknown>;
    try {
      request = JSON.parse(line);
    } catch {
      reply({ error: 'request is not valid JSON', code: 'EINVAL' });
      return runNext();
    }
    if (typeof request !== 'object' || request === null || Array.isArray(request)) {
      reply({ error: 'request must be a JSON object', code: 'EINVAL' });
      return runNext();
    }
    busy = true;
    handler(request)
      .then(
        (result) => reply({ result }),
        (err: Error & { code?: string }) => reply({ error: err.message, code: err.code }),
      )
      .finally(() => {
        busy = false;
        runNext();
      });
  };

  sock.on('data', (chunk: Buffer) => {
    let start = 0;
    while (!closed) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl < 0 ? chunk.length : nl;
      if (pendingLength + (end - start) > MAX_REQUEST_LINE) {
        return refuse(`request line longer than ${MAX_REQUEST_LINE} bytes`, 'E2BIG');
      }
      if (nl < 0) {
        if (end > start) {
          pending.push(Buffer.from(chunk.subarray(start, end))); // a copy: never pin the whole chunk
          pendingLength += end - start;
        }
        return;
      }
      const line = Buffer.concat([...pending, chunk.subarray(start, nl)]).toString('utf8');
      pending = [];
      pendingLength = 0;
      start = nl + 1;
      if (queue.length >= MAX_QUEUED_REQUESTS) return refuse(`more than ${MAX_QUEUED_REQUESTS} requests queued on one connection`, 'E2BIG');
      queue.push(line);
      runNext();
    }
  });
  sock.on('error', () => {
    /* client went away */
  });
}
