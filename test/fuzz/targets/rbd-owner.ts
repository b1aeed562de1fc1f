/**
 * Fuzz what the rbd handler reads back to fence its dead predecessor
 * (handlers/rbd/predecessor.ts): the recorded address file (our own, in the
 * LUN's runtime directory, but a file on disk all the same) and the lock
 * owner strings librbd returns, both mutated. Every case must end with
 *   - entityAddresses giving only IPv4 or [IPv6] "ip:port/nonce" strings,
 *     without a messenger prefix or a comma, and
 *   - predecessorOwner naming an owner from the list, only when that owner
 *     and the record share an entity address: never a lock that is not the
 *     predecessor's (breaking it would blocklist a live gateway).
 * Anything else, a throw included, is a finding.
 */
import { entityAddresses, predecessorOwner } from '../../../handlers/rbd/predecessor.js';
import { mutate } from '../lib/mutate.js';
import { FuzzFinding, type FuzzTarget } from '../lib/target.js';

const RECORDS = ['[v2:127.0.0.1:0/3158294567,v1:127.0.0.1:0/3158294567]', '10.0.0.5:0/111', 'any:[::1]:0/7', ''];
const OWNERS = [['127.0.0.1:0/3158294567'], ['10.0.0.5:0/112', '10.0.0.5:0/111'], ['[::1]:0/7'], []];

/** Independent of the parser's own pattern: only address characters, ending in :port/nonce. */
const SAFE = /^[0-9A-Fa-f.:[\]]+:\d+\/\d+$/;

const target: FuzzTarget = {
  name: 'rbd-owner',
  description: "the rbd handler's predecessor record and lock-owner address matching fed mutated strings",
  cases: { short: 3000, long: 200000 },
  async runCase({ rng }) {
    const record = mutate(rng, Buffer.from(rng.pick(RECORDS)), { count: rng.between(0, 3) }).toString('utf8');
    const owners = rng.pick(OWNERS).map((o) => (rng.between(0, 1) ? mutate(rng, Buffer.from(o), { count: rng.between(1, 3) }).toString('utf8') : o));
    const mine = entityAddresses(record);
    for (const a of mine) {
      if (!SAFE.test(a) || /^(?:v1|v2|any|none):/.test(a)) throw new FuzzFinding('bad-address', `${JSON.stringify(a)} from ${JSON.stringify(record)}`);
    }
    const owner = predecessorOwner(owners, record);
    if (owner === undefined) return mine.size === 0 ? 'no-record' : 'not-owner';
    if (!owners.includes(owner)) throw new FuzzFinding('foreign-owner', `${JSON.stringify(owner)} is not in ${JSON.stringify(owners)}`);
    if (![...entityAddresses(owner)].some((a) => mine.has(a))) {
      throw new FuzzFinding('wrong-owner', `${JSON.stringify(owner)} shares no address with ${JSON.stringify(record)}`);
    }
    return 'predecessor';
  },
};

export default target;
