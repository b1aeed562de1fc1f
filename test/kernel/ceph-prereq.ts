/**
 * What the rbd kernel tests need besides the VM: Ceph's daemons (scripts/setup.sh
 * installs them) and the addon's librbd part. Outside CI a missing piece skips
 * the test with a warning; in CI it fails the run.
 */
import { spawnSync } from 'node:child_process';
import { rbdBinding } from '../../src/native.js';

/** Why `test` cannot run here, or undefined when it can. */
export function cephMissing(test: string): string | undefined {
  const reason =
    spawnSync('ceph-osd', ['--version'], { stdio: 'ignore' }).status !== 0 ? 'Ceph is not installed (scripts/setup.sh)' : rbdBinding().reason;
  if (reason && process.env.CI) throw new Error(`rbd kernel test ${test}: ${reason}`);
  if (reason) console.warn(`[kernel tests] skipping ${test}: ${reason}`);
  return reason;
}
