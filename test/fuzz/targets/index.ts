/**
 * Every fuzz target, by name. Loaded lazily so a worker imports only the
 * code under test it runs. Add a target here and it is in `scripts/fuzz`
 * and in the short run of `npm test` (test/fuzz/fuzz.test.ts).
 */
import type { FuzzTarget } from '../lib/target.js';

export const targets: Record<string, () => Promise<FuzzTarget>> = {
  'self-check': async () => (await import('./self-check.js')).default,
  cdb: async () => (await import('./cdb.js')).default,
  ring: async () => (await import('./ring.js')).default,
  'ring-kernel': async () => (await import('./ring-kernel.js')).default,
  config: async () => (await import('./config.js')).default,
  qcow2: async () => (await import('./qcow2.js')).default,
  'metrics-address': async () => (await import('./metrics-address.js')).default,
  luks: async () => (await import('./luks.js')).default,
  'qcow2-luks': async () => (await import('./qcow2-luks.js')).default,
  xcopy: async () => (await import('./xcopy.js')).default,
  'rbd-spec': async () => (await import('./rbd-spec.js')).default,
  'rbd-owner': async () => (await import('./rbd-owner.js')).default,
  'alua-configfs': async () => (await import('./alua-configfs.js')).default,
};
