/**
 * Fuzz the rbd handler's dev_config parser (`rbd/POOL/IMAGE[@SNAP]` plus
 * conf/id/keyring/osd_op_timeout/cache/thread_policy/dispatch) with mutated configs and option values.
 * Every case must end in
 *   ok        a spec whose names are non-empty, printable, free of '/' and '@',
 *             absolute paths, a timeout within 0..86400, cache none|writethrough|writeback
 *             thread_policy batch|normal and dispatch inline|queued
 *   refused   a ConfigError naming the handler
 * Anything else (another error class, an accepted name that would reach
 * librados with a separator or control byte in it) is a finding.
 */
import { parseRbdSpec } from '../../../handlers/rbd/spec.js';
import { ConfigError } from '../../../src/backstore/config-error.js';
import { mutate } from '../lib/mutate.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

const CONFIGS = ['rbd/disk0', 'pool-1/img.2@snap_3', 'a/b', 'rbd/disk0@s'];
const OPTIONS: Record<string, string>[] = [
  {},
  { conf: '/etc/ceph/ceph.conf', id: 'admin' },
  { keyring: '/etc/ceph/ceph.client.iscsi.keyring', id: 'iscsi', osd_op_timeout: '30' },
  { osd_op_timeout: '0', cache: 'writeback' },
  { cache: 'none' },
  { cache: 'writethrough' },
  { thread_policy: 'batch' },
  { thread_policy: 'normal', cache: 'none' },
  { dispatch: 'inline' },
  { dispatch: 'queued', thread_policy: 'batch' },
];
const SAFE = /^[A-Za-z0-9_.+=-]+$/;

const target: FuzzTarget = {
  name: 'rbd-spec',
  description: 'the rbd handler dev_config/options parser fed mutated strings',
  cases: { short: 3000, long: 200000 },
  async runCase({ rng }) {
    const config = mutate(rng, Buffer.from(rng.pick(CONFIGS)), { count: rng.between(0, 3) }).toString('utf8');
    const options: Record<string, string> = { ...rng.pick(OPTIONS) };
    const keys = Object.keys(options);
    if (keys.length && rng.between(0, 1)) {
      const key = rng.pick(keys);
      options[key] = mutate(rng, Buffer.from(options[key]!), { count: rng.between(1, 3) }).toString('utf8');
    }
    let spec;
    try {
      spec = parseRbdSpec(config, options);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw new FuzzFinding('not-config-error', String(err));
      if (!err.message.startsWith('rbd: ')) throw new FuzzFinding('unnamed', err.message);
      return 'refused';
    }
    for (const [what, name] of [['pool', spec.pool], ['image', spec.image], ['id', spec.id]] as const) {
      if (!SAFE.test(name)) throw new FuzzFinding('accepted-invalid', `${what} ${JSON.stringify(name)} from ${JSON.stringify(config)}`);
    }
    if (spec.snap !== '' && !SAFE.test(spec.snap)) throw new FuzzFinding('accepted-invalid', `snap ${JSON.stringify(spec.snap)}`);
    if (!spec.conf.startsWith('/') || (spec.keyring !== undefined && !spec.keyring.startsWith('/'))) throw new FuzzFinding('accepted-invalid', 'relative path');
    if (!Number.isInteger(spec.osdOpTimeout) || spec.osdOpTimeout < 0 || spec.osdOpTimeout > 86400) {
      throw new FuzzFinding('accepted-invalid', `timeout ${spec.osdOpTimeout}`);
    }
    if (!['none', 'writethrough', 'writeback'].includes(spec.cache)) throw new FuzzFinding('accepted-invalid', `cache ${JSON.stringify(spec.cache)}`);
    if (!['batch', 'normal'].includes(spec.threadPolicy)) throw new FuzzFinding('accepted-invalid', `thread_policy ${JSON.stringify(spec.threadPolicy)}`);
    if (!['inline', 'queued'].includes(spec.dispatch)) throw new FuzzFinding('accepted-invalid', `dispatch ${JSON.stringify(spec.dispatch)}`);
    return 'ok';
  },
};

export default target;
