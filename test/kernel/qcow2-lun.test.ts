// Acceptance of the `qcow2` handler against the real kernel, in one boot: a
// base image made by qemu-img, an overlay made by `tcmu-ts image create
// --backing`, served as a `qcow2//path` LUN on tcm_loop; base data through
// the chain, ext4, fio --verify, a live snapshot, then qemu's own tools on the
// image after the runner stopped. Guest side: test/kernel/scenarios/qcow2-lun.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const GiB = 1 << 30;
const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/qcow2-lun.sh'), 'utf8');

describeKernel('qcow2 overlay LUN on tcm_loop served by tcmu-ts', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);
  // a reference checksum printed by the guest (so two missing keys never compare equal)
  const sum = (key: string) => {
    const v = r(key);
    expect(v, why(`reference checksum ${key} missing`)).toMatch(/^[0-9a-f]{64}$/);
    return v;
  };

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[qcow2-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
    const errs = Number(r('runner_log_errors') ?? 0);
    if (errs > 0) console.warn(`[qcow2-lun] runner logged ${errs} error line(s):\n${(run.logs.get('runner') ?? []).filter((l) => /"level":[56]0/.test(l)).join('\n')}`);
    console.log(`[qcow2-lun] UNMAP over backing data: discard_max_bytes=${r('discard_max_bytes')} lbprz=${r('lbprz')} reads afterwards: ${r('disc_region_after')}`);
  });

  it('builds a base with qemu-img and an overlay with tcmu-ts image create', () => {
    expect(r('base_create'), why('qemu-img convert -O qcow2 (base image)')).toBe('ok');
    expect(r('base_sha_before'), why('sha256 of the base image')).toMatch(/^[0-9a-f]{64}$/);
    expect(r('overlay_create'), why('tcmu-ts image create --backing')).toBe('ok');
    expect(r('overlay_backing'), why('qemu-img info: backing file of the overlay')).toBe('/mnt/scratch/base.qcow2');
  });

  it('serves the overlay as a qcow2//path LUN and exports it on tcm_loop', () => {
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('lun_create'), why('tcmu-ts lun create q0 --backstore qcow2')).toBe('ok');
    expect(r('dev_config'), why('dev_config of the TCMU device')).toBe('qcow2//mnt/scratch/overlay.qcow2');
    expect(r('export'), why('tcm_loop export (kernel scan of the LUN)')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('readcap_bytes'), why('block device size')).toBe(String(GiB));
  });

  it('shows the base image data through the overlay, and zeros where the base has none', () => {
    expect(r('base_region_lun'), why('8 MiB at 900 MiB read through the LUN vs what was written into the base')).toBe(sum('base_region_src'));
    expect(r('zero_region_lun'), why('8 MiB at 960 MiB (unwritten) read through the LUN')).toBe(sum('zero_region_expect'));
  });

  it('keeps an ext4 tree intact across umount and remount', () => {
    expect(Number(r('tree_files')), why('payload tree is empty')).toBeGreaterThan(100);
    for (const step of ['mkfs', 'mount', 'copy', 'umount', 'remount'])
      expect(r(step), why(`filesystem step ${step}`)).toBe('ok');
    expect(r('tree_sum_copy'), why('checksums of the copied tree differ')).toBe(sum('tree_sum_src'));
  });

  it('passes fio random writes (4k-1M, qd32, direct, 96 MiB) with crc32c verification', () => {
    expect(r('fio'), why('fio --verify=crc32c')).toBe('ok');
  });

  it('UNMAP over data only the base holds: accepted, and zeros afterwards if the LUN claims LBPRZ', () => {
    expect(r('disc_region_before'), why('4 MiB at 980 MiB before the discard (base data)')).toBe(sum('disc_region_base'));
    if (Number(r('discard_max_bytes')) > 0) expect(r('discard'), why('blkdiscard over base-only data')).toBe('ok');
    if (r('lbprz') === '1') expect(r('disc_region_after'), why('LBPRZ=1 but a discarded range does not read zeros')).toBe('zeros');
  });

  it('takes a live snapshot of the served LUN and lists it', () => {
    expect(r('write_m1'), why('write of the pre-snapshot data')).toBe('ok');
    expect(r('snap_create'), why('tcmu-ts snapshot create q0 snap1 (served LUN)')).toBe('ok');
    expect(r('write_m2'), why('write after the snapshot')).toBe('ok');
    expect(r('after_snap_region'), why('the post-snapshot write reads back')).toBe(sum('m2'));
    expect(r('snap_list_rc'), why('tcmu-ts snapshot list q0')).toBe('0');
    expect(r('snap_list_has'), why('snap1 in tcmu-ts snapshot list q0')).toBe('1');
  });

  it('reverts the served LUN to the snapshot', () => {
    expect(r('snap_revert'), why('tcmu-ts snapshot revert q0 snap1')).toBe('ok');
    expect(r('after_revert_region'), why('region after revert = data at snapshot time')).toBe(sum('m1'));
    expect(r('after_revert_base_region'), why('base data still visible after revert')).toBe(sum('base_region_src'));
  });

  it('tears down cleanly and the runner exits 0 on SIGTERM', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
  });

  it('leaves an image qemu-img checks clean, with snap1 in its snapshot table', () => {
    expect(r('qemu_check_rc'), why('qemu-img check overlay.qcow2 exit status')).toBe('0');
    expect(r('qemu_snapshot_rc'), why('qemu-img snapshot -l exit status')).toBe('0');
    expect(r('qemu_snapshot_has'), why('snap1 in qemu-img snapshot -l')).toBe('1');
    expect(r('ts_check_rc'), why('tcmu-ts image check exit status')).toBe('0');
  });

  it('qemu reads the data the LUN last showed, through the backing chain', () => {
    expect(r('qemu_convert'), why('qemu-img convert of the overlay')).toBe('ok');
    expect(r('qemu_snap_region'), why('snapshot region as qemu reads it')).toBe(sum('m1'));
    expect(r('qemu_base_region'), why('base region as qemu reads it through the overlay')).toBe(sum('base_region_src'));
  });

  it('never writes to the base image (byte-identical sha256)', () => {
    expect(r('base_sha_after'), why('sha256 of base.qcow2 after the run')).toBe(sum('base_sha_before'));
    expect(run.ok, why('guest run')).toBe(true);
  });
});
