/**
 * Fuzz the metrics listen address parser (`--metrics`, `[daemon] metrics`)
 * with mutated addresses. Every case must end in
 *   ok:ipv4 | ok:ipv6 | ok:name   an address whose host and port are usable as parsed
 *   refused                       an Error saying what is wrong, quoting at most 80 characters of the input (JSON-escaped: bounded, not short)
 * Anything else (a Node-internal message, an accepted port out of range, a
 * host that cannot be what was written) is a finding.
 */
import { isIP } from 'node:net';
import { parseListenAddress } from '../../../src/daemon/metrics-address.js';
import { mutate } from '../lib/mutate.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

const SEEDS = ['127.0.0.1:9470', '[::1]:9470', 'metrics.example.org:80', '0.0.0.0:65535', '[fe80::1%eth0]:1', 'localhost:9470'];
const NODE_INTERNAL = /ERR_[A-Z_]+|Cannot read propert|is not a function|undefined|NaN|\[object /;

const target: FuzzTarget = {
  name: 'metrics-address',
  description: 'the metrics HOST:PORT parser fed mutated addresses',
  cases: { short: 3000, long: 200000 },
  async runCase({ rng }) {
    const seed = Buffer.from(rng.pick(SEEDS), 'utf8');
    const text = mutate(rng, seed, { count: rng.between(0, 4) }).toString('utf8');
    let parsed: { host: string; port: number };
    try {
      parsed = parseListenAddress(text);
    } catch (err) {
      const message = (err as Error)?.message ?? '';
      if (!(err instanceof Error) || message === '') throw new FuzzFinding('raw-error', `not a plain Error: ${String(err)}`);
      if (NODE_INTERNAL.test(message.replace(/"(?:[^"\\]|\\.)*"/g, '""'))) throw new FuzzFinding('node-internals', message);
      if (message.length > 1200) throw new FuzzFinding('long-message', `${message.length} characters`);
      return 'refused';
    }
    const { host, port } = parsed;
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new FuzzFinding('accepted-invalid', `port ${port} from ${JSON.stringify(text)}`);
    if (host === '' || !text.includes(host)) throw new FuzzFinding('accepted-invalid', `host ${JSON.stringify(host)} from ${JSON.stringify(text)}`);
    if (isIP(host) === 6) return 'ok:ipv6';
    if (text.startsWith('[')) throw new FuzzFinding('accepted-invalid', `bracketed non-IPv6 host from ${JSON.stringify(text)}`);
    return isIP(host) === 4 ? 'ok:ipv4' : 'ok:name';
  },
};

export default target;
