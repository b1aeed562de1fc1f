// The rbd handler against the real kernel and a real Ceph cluster, in one
// boot: scripts/ceph.sh starts a single-node cluster inside the VM (state on
// the ext4 scratch disk), `tcmu-ts serve` exports rbd/rbd/disk0 on tcm_loop.
// Guest side: test/kernel/scenarios/rbd-lun.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { cephMissing, runCephScenario } from './ceph-prereq.js';
import { describeKernel, explain, one, REPO, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/rbd-lun.sh'), 'utf8');
const missing = cephMissing('rbd-lun');

describeKernel('rbd LUN on tcm_loop served by tcmu-ts, cluster in the VM', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runCephScenario(missing, SCENARIO, 1500);
    console.log(
      `[rbd-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s, cluster start ${r('cluster_sec')}s`,
    );
  });

  it('starts the cluster in the VM and exports the image as a 1 GiB disk', () => {
    expect(r('cluster'), why('scripts/ceph.sh start in the guest')).toBe('ok');
    expect(r('rbd_create'), why('rbd create rbd/disk0')).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve did not open the uio device')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('readcap_blocks'), why('READ CAPACITY(16)')).toBe(String((1 << 30) / 512));
  });

  it('keeps an ext4 tree intact across umount and remount', () => {
    expect(Number(r('tree_files')), why('payload tree is empty')).toBeGreaterThan(50);
    for (const step of ['mkfs', 'mount', 'copy', 'umount', 'remount']) expect(r(step), why(`filesystem step ${step}`)).toBe('ok');
    expect(r('tree_sum_copy'), why('checksums of the copied tree differ')).toBe(r('tree_sum_src'));
  });

  it('passes fio random writes (4k-1M, qd32, direct) with crc32c verification', () => {
    expect(r('fio'), why('fio --verify=crc32c')).toBe('ok');
  });

  it('rbd export of the image equals a dd of the LUN after SYNCHRONIZE CACHE', () => {
    expect(r('sync'), why('sg_sync')).toBe('ok');
    expect(r('lun_sum'), why('dd of the LUN')).toMatch(/^[0-9a-f]{64}$/);
    expect(r('export_sum'), why('rbd export differs from the LUN')).toBe(r('lun_sum'));
  });

  it('COMPARE AND WRITE: one block advertised; a miscompare gives MISCOMPARE and writes nothing, a match writes', () => {
    expect(r('vpdb0_max_caw'), why('Block Limits MAXIMUM COMPARE AND WRITE LENGTH')).toBe('1');
    expect(r('caw_miss_rc'), why('sg_compare_and_write exit status (14 = miscompare)')).toBe('14');
    expect(r('caw_miss_unchanged'), why('the block changed after a miscompare')).toBe('yes');
    expect(r('caw_hit_rc'), why('sg_compare_and_write with matching data')).toBe('0');
    expect(r('caw_hit_written'), why('the block after a matching COMPARE AND WRITE')).toBe('yes');
  });

  it('`rbd resize` by another client grows the LUN; the initiator sees the new capacity', () => {
    expect(r('rbd_resize'), why('rbd resize')).toBe('ok');
    expect(r('resize_dev_size'), why('the runner did not follow the image size into attrib/dev_size')).toBe(String(1280 << 20));
    expect(r('resize_blocks'), why('the initiator did not see the new capacity after a rescan')).toBe(String((1280 << 20) / 512));
  });

  it('stops cleanly', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status')).toBe('0');
  });
});
