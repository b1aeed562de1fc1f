/**
 * The daemon's control socket: a unix stream socket speaking one JSON object
 * per line, request -> response. It is also the single-instance guard: a
 * daemon that can connect to an existing socket refuses to start.
 */
import { createServer, createConnection, type Server as NetServer, type Socket } from 'node:net';
import { mkdirSync, unlinkSync, chmodSync } from 'node:fs';
import { dirname } from 'node:path';

export const DEFAULT_CONTROL_SOCKET = '/run/tcmu-ts/control.sock';

export type ControlHandler = (request: Record<string, unknown>) => Promise<unknown>;

/** Send one request to a running daemon; rejects with code ENOENT/ECONNREFUSED when none runs. */
export function controlRequest(path: string, request: Record<string, unknown>, timeoutMs = 30_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buffered = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer from tcmu-ts daemon at ${path} within ${timeoutMs} ms`));
    }, timeoutMs);
    sock.on('connect', () => sock.write(`${JSON.stringify(request)}\n`));
    sock.on('data', (chunk) => {
      buffered += chunk.toString('utf8');
      const nl = buffered.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const response = JSON.parse(buffered.slice(0, nl));
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

export async function startControlServer(path: string, handler: ControlHandler): Promise<NetServer> {
  if (await isDaemonListening(path)) {
    throw Object.assign(new Error(`another tcmu-ts daemon is already running (control socket ${path} answers)`), {
      code: 'EALREADY',
    });
  }
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  try {
    unlinkSync(path); // a stale socket from a daemon that died
  } catch {
    /* none */
  }
  const server = createServer((sock) => serveConnection(sock, handler));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  chmodSync(path, 0o600); // root only: the socket can delete LUNs
  return server;
}

function serveConnection(sock: Socket, handler: ControlHandler): void {
  let buffered = '';
  sock.on('data', (chunk) => {
    buffered += chunk.toString('utf8');
    let nl: number;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let request: Record<string, unknown>;
      try {
        request = JSON.parse(line);
      } catch {
        sock.write(`${JSON.stringify({ error: 'request is not valid JSON' })}\n`);
        continue;
      }
      handler(request).then(
        (result) => sock.write(`${JSON.stringify({ result })}\n`),
        (err: Error & { code?: string }) => sock.write(`${JSON.stringify({ error: err.message, code: err.code })}\n`),
      );
    }
  });
  sock.on('error', () => {
    /* client went away */
  });
}
