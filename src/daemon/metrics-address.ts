/**
 * The metrics listen address, from `serve --metrics` or `[daemon] metrics`:
 * `HOST:PORT` with an IPv4 address or host name, or `[IPv6]:PORT`. No
 * default host: metrics name every LUN, so where they are exposed is the
 * admin's explicit choice (127.0.0.1 keeps them on the machine).
 */
import { isIP } from 'node:net';

export interface ListenAddress {
  host: string;
  port: number;
}

const HOST_NAME = /^[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*$/;

/** Parse `text`; throws an Error whose message says what is wrong (the caller adds the key). */
export function parseListenAddress(text: string): ListenAddress {
  // Messages quote the input bounded: a hostile value must not flood the log or the terminal.
  const short = (part: string) => JSON.stringify(part.length > 80 ? `${part.slice(0, 80)}...` : part);
  const quoted = short(text);
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) throw new Error(`${quoted} is not HOST:PORT (e.g. 127.0.0.1:9470 or [::1]:9470)`);
  const host = m[1] ?? m[2]!;
  if (m[1] !== undefined && isIP(host) !== 6) throw new Error(`${quoted}: the part in brackets is not an IPv6 address`);
  if (m[2] !== undefined && isIP(host) !== 4 && !HOST_NAME.test(host)) throw new Error(`${quoted}: ${short(host)} is neither an IPv4 address nor a host name`);
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`${quoted}: port ${port} is not in 1-65535`);
  return { host, port };
}
