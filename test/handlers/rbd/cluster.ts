/**
 * The real single-node cluster of scripts/ceph.sh for the rbd tests: started
 * once (idempotent) in TCMU_CEPH_DIR or /tmp/tcmu-ts-test-ceph. Outside CI a
 * machine without Ceph (or not root) skips visibly; under CI=true that fails.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rbdBinding } from '../../../src/native.js';

const CI = process.env.CI === 'true';
const SCRIPT = fileURLToPath(new URL('../../../scripts/ceph.sh', import.meta.url));
export const CEPH_DIR = process.env.TCMU_CEPH_DIR ?? '/tmp/tcmu-ts-test-ceph';
export const CONF = `${CEPH_DIR}/ceph.conf`;

function missingReason(): string | undefined {
  if (spawnSync('ceph-mon', ['--version'], { stdio: 'ignore' }).status !== 0) return 'ceph-mon is not installed (scripts/setup.sh installs Ceph)';
  if (process.getuid?.() !== 0) return 'the test cluster needs root';
  const rbd = rbdBinding();
  if (!rbd.binding) return rbd.reason;
  return undefined;
}

export const cephMissing = missingReason();
if (cephMissing && CI) throw new Error(`rbd tests: ${cephMissing}`);
if (cephMissing) console.warn(`SKIPPING rbd cluster tests: ${cephMissing}`);

function monRunning(): boolean {
  try {
    process.kill(Number(readFileSync(`${CEPH_DIR}/run/mon.a.pid`, 'utf8').trim()), 0);
    return true;
  } catch {
    return false;
  }
}

let startedHere = false;

/** Stop the cluster if startCluster() started it (a cluster found running stays up). */
export function stopCluster(): void {
  if (startedHere) execFileSync(SCRIPT, ['stop', CEPH_DIR], { stdio: ['ignore', 'ignore', 'inherit'], timeout: 120_000 });
  startedHere = false;
}

/** Start (or find running) the cluster; returns the conf path. */
export function startCluster(): string {
  startedHere = !monRunning();
  // Its own port, so a developer's cluster on the default one does not collide.
  execFileSync(SCRIPT, ['start', CEPH_DIR], {
    stdio: ['ignore', 'ignore', 'inherit'],
    timeout: 300_000,
    env: { ...process.env, CEPH_MON_PORT: process.env.CEPH_MON_PORT ?? '3390' },
  });
  return CONF;
}

/** The rbd CLI against the test cluster. */
export function rbdCli(...args: string[]): string {
  return execFileSync('rbd', ['-c', CONF, ...args], { encoding: 'utf8', timeout: 60_000 });
}

let counter = 0;
/** A fresh image name per test (the cluster is shared between runs). */
export function freshImage(size = '64M', extra: string[] = []): string {
  const name = `t${process.pid}-${Date.now().toString(36)}-${counter++}`;
  rbdCli('create', `rbd/${name}`, '--size', size, ...extra);
  return name;
}
