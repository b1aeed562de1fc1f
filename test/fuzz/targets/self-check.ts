/**
 * Exercises the harness itself: clean refusals and normal outcomes, and (on
 * demand, through FUZZ_SELF_CHECK) each kind of failure the driver must catch.
 * The short run only takes the clean paths; test/fuzz/driver.test.ts drives the rest.
 */
import { StorageError } from '../../../src/backstore/errors.js';
import type { FuzzTarget } from '../lib/target.js';

const misbehave = process.env.FUZZ_SELF_CHECK;

const target: FuzzTarget = {
  name: 'self-check',
  description: 'the fuzz harness judging known-good and known-bad cases',
  cases: { short: 50, long: 50 },
  async runCase({ rng, index }) {
    if (misbehave && index === 3) {
      switch (misbehave) {
        case 'hang':
          for (;;);
        case 'crash':
          process.abort();
        case 'memory': {
          const keep = Buffer.alloc(300 * 2 ** 20, 1);
          return `big:${keep.length}`;
        }
        case 'raw':
          return (undefined as unknown as { x: string }).x;
        case 'unhandled':
          void Promise.reject(new Error('left unhandled'));
          return 'ok';
      }
    }
    if (rng.chance(0.3)) throw new StorageError('ECORRUPT', 'made-up corruption');
    return 'ok';
  },
};

export default target;
