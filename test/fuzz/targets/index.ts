/**
 * Every fuzz target, by name. Loaded lazily so a worker imports only the
 * code under test it runs. Add a target here and it is in `scripts/fuzz`
 * and in the short run of `npm test` (test/fuzz/fuzz.test.ts).
 */
import type { FuzzTarget } from '../lib/target.js';

export const targets: Record<string, () => Promise<FuzzTarget>> = {
  'self-check': async () => (await import('./self-check.js')).default,
  qcow2: async () => (await import('./qcow2.js')).default,
};
