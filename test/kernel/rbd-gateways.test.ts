// One RBD image behind two gateways (issue 21 acceptance 4): two tcmu-ts
// daemons, each serving its own TCMU device on the same image through its
// own tcm_loop target and ALUA port group, written at once; then the lock
// owner is SIGKILLed and fio runs through the other path, whose port group
// turns active/optimized as its gateway takes the lock. Real kernel, real
// Ceph cluster, one boot. Guest side: test/kernel/scenarios/rbd-gateways.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { cephMissing, runCephScenario } from './ceph-prereq.js';
import { describeKernel, explain, one, REPO, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/rbd-gateways.sh'), 'utf8');
const missing = cephMissing('rbd-gateways');

describeKernel('rbd image behind two gateways', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runCephScenario(missing, SCENARIO, 2400);
    console.log(
      `[rbd-gateways] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s, cluster start ${r('cluster_sec')}s; ` +
        `both paths at once ${r('both_paths_sec')}s, fio through B across the owner's kill ${r('failover_fio_sec')}s, ` +
        `B's port group active/optimized ${r('alua_flip_sec')}s into it`,
    );
  }, 2460_000);

  it('two daemons serve the same exclusive-lock image, each through its own target', () => {
    expect(r('cluster'), why('scripts/ceph.sh start in the guest')).toBe('ok');
    expect(r('features'), why('rbd info features')).toContain('exclusive-lock');
    expect(r('gateway_a'), why('gateway A daemon')).toBe('ok');
    expect(r('gateway_b'), why('gateway B daemon')).toBe('ok');
    expect(r('path_a'), why('tcm_loop export of gateway A')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('path_b'), why('tcm_loop export of gateway B')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('path_b'), why('two distinct paths')).not.toBe(r('path_a'));
    expect(r('watchers'), why('rbd status: both gateways watch the image')).toBe('2');
  });

  it('writes through both gateways at once lose nothing: fio verify on each path, and each region reads the same through A, B and rbd export', () => {
    expect(r('fio_a'), why('fio verify through gateway A')).toBe('ok');
    expect(r('fio_b'), why('fio verify through gateway B')).toBe('ok');
    expect(r('region_0_same'), why('region written through A')).toBe('yes');
    expect(r('region_32_same'), why('region written through B')).toBe('yes');
  });

  it("killing the lock owner moves the lock: fio through the other gateway then finishes without an error, and the dead owner's last write is there", () => {
    expect(r('marker_via_a'), why('marker written through A (A then owns the lock)')).toBe('ok');
    expect(r('owner_before_kill'), why('rbd lock ls before the kill')).toMatch(/^client\.\d+$/);
    expect(r('kill_a'), why('SIGKILL of gateway A')).toBe('ok');
    expect(r('fio_b_failover'), why('fio verify through B across the kill')).toBe('ok');
    expect(r('lock_owner_after_kill'), why('rbd lock ls after the kill')).toMatch(/^client\.\d+$/);
    expect(r('lock_owner_after_kill'), why('the lock moved to gateway B')).not.toBe(r('owner_before_kill'));
    expect(r('watchers_before_kill'), why('rbd status before the kill: the owner watches the image')).toContain(r('owner_before_kill'));
    expect(r('watchers_after_kill'), why("rbd status after the failover: the dead owner's watch expired")).not.toContain(r('owner_before_kill'));
    expect(Number(r('blocklisted')), why("gateway B broke the dead owner's lock, which blocklists it")).toBeGreaterThanOrEqual(1);
    expect(r('marker_via_b'), why("A's acknowledged write reads back through B")).toBe('yes');
    expect(r('region_64_same'), why('region written through B across the kill, vs rbd export')).toBe('yes');
  });

  it('reports implicit ALUA with each gateway in its own port group, active/optimized where the exclusive lock is', () => {
    expect(r('alua_group_a'), why('configfs ALUA group of gateway A')).toBe('ok');
    expect(r('alua_group_b'), why('configfs ALUA group of gateway B')).toBe('ok');
    expect(r('alua_tpgs'), why('sg_inq TPGS through A and B')).toBe('11');
    expect(r('alua_vpd_groups'), why('VPD 0x83 target port group through A and B')).toBe('0x1 0x2');
    expect(r('alua_rtpg_owner_a'), why('REPORT TARGET PORT GROUPS through A and B while A holds the lock')).toBe('0x00 0x01');
    expect(r('alua_configfs_owner_a'), why('configfs alua_access_state of A and B while A holds the lock')).toBe('0 1');
    expect(r('alua_configfs_after_failover'), why("B's group after B took the lock with the failover I/O (no RTPG asked)")).toBe('0');
    expect(r('alua_rtpg_after_failover'), why('REPORT TARGET PORT GROUPS through B after the failover')).toBe('0x00');
  });

  it('stops cleanly', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('runner_exit'), why('gateway B exit status')).toBe('0');
    expect(run.ok, why('scenario')).toBe(true);
  });
});
