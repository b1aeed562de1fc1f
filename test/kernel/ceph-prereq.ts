/**
 * What the rbd kernel tests need besides the VM: Ceph's daemons (scripts/setup.sh
 * installs them) and the addon's librbd part. Outside CI a missing piece skips
 * the test with a warning; in CI it fails the run.
 */
import { spawnSync } from 'node:child_process';
import { rbdBinding } from '../../src/native.js';
import { runGuestScript, type GuestRun } from './vm.js';

/** Why `test` cannot run here, or undefined when it can. */
export function cephMissing(test: string): string | undefined {
  const reason =
    spawnSync('ceph-osd', ['--version'], { stdio: 'ignore' }).status !== 0 ? 'Ceph is not installed (scripts/setup.sh)' : rbdBinding().reason;
  if (reason && process.env.CI) throw new Error(`rbd kernel test ${test}: ${reason}`);
  if (reason) console.warn(`[kernel tests] skipping ${test}: ${reason}`);
  return reason;
}

/**
 * Run a scenario that starts a Ceph cluster in the guest: fails with `missing`
 * (cephMissing's answer) first, and gives the guest what a mon and an OSD
 * need beside the runner (3 GiB, an 8 GiB scratch disk for the OSD's file).
 */
export function runCephScenario(missing: string | undefined, scenario: string, timeoutSec: number): Promise<GuestRun> {
  if (missing) throw new Error(missing);
  return runGuestScript(scenario, { timeoutSec, memMiB: 3072, scratchSize: '8G' });
}
