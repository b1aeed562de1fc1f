// Issue 19 acceptance on the real kernel, in one boot: compressed qcow2 LUNs
// (compress=zstd and compress=zlib) with ext4 and real files, fio verify,
// then qemu's tools on the images, and the allocated size next to what
// `qemu-img convert -c` makes of the same data (both printed). Guest side:
// test/kernel/scenarios/compress-lun.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/compress-lun.sh'), 'utf8');

describeKernel('compressed qcow2 LUNs (compress=zstd|zlib) on tcm_loop', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);
  const size = (key: string) => {
    const v = Number(r(key));
    expect(v, why(`size ${key} missing`)).toBeGreaterThan(0);
    return v;
  };
  const report = (tag: string) => {
    const ours = size(`size_ours_${tag}`);
    const ref = size(`size_ref_${tag}`);
    console.log(`[compress-lun] ${tag}: image ${ours} B allocated, qemu-img convert -c ${ref} B, ratio ${(ours / ref).toFixed(3)}`);
    return { ours, ref };
  };

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 1100, scratchSize: '8G' });
    console.log(`[compress-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('zstd: image create --compress zstd makes a v3 zstd image; the LUN carries compress=zstd', () => {
    expect(r('create_zstd'), why('tcmu-ts image create --compress zstd')).toBe('ok');
    expect(r('img_ctype_zstd'), why('qemu-img info compression type')).toBe('zstd');
    expect(r('dev_config_z0'), why('dev_config')).toBe('qcow2//mnt/scratch/z.qcow2;compress=zstd');
  });

  it('zstd: ext4 with samples of /usr/share/doc and /usr/lib/python3.11, fio verify, read back intact', () => {
    for (const step of ['mkfs_zstd', 'mount_zstd', 'copy_zstd', 'umount_zstd', 'fio_zstd', 'readback_zstd']) expect(r(step), why(step)).toBe('ok');
    expect(Number(r('tree_files_zstd')), why('files copied')).toBeGreaterThan(1000);
    expect(r('tree_sum_lun'), why('doc tree read back after remount')).toBe(r('tree_sum_src'));
  });

  // Issue 19's bound before any compaction an admin runs. The daemon compacts
  // a quiet compress= LUN by itself (auto_compact, on by default): without it
  // the dead payloads ext4's small metadata rewrites leave made 1.14x (zstd)
  // and 1.17x-1.20x (zlib). The scenario removes the LUN once that
  // compaction has nothing pending, as `status --space` shows it.
  const BEFORE_ADMIN_COMPACTION = 1.15;
  const autoCompacted = (key: string) => {
    const v = r(key);
    console.log(`[compress-lun] automatic compaction ${key}: ${v}`);
    expect(v, why(`automatic compaction (${key}): "runs=N moved=M", N >= 1`)).toMatch(/^runs=[1-9]\d* moved=\d+ /);
  };

  it('zstd: compacted by the daemon on its own; qemu-img check clean, compare equal, allocated size <= 1.15x qemu-img convert -c', () => {
    autoCompacted('auto_compact_zstd1');
    expect(r('qemu_check_zstd1'), why('qemu-img check')).toBe('0');
    expect(r('qemu_compare_zstd1'), why('qemu-img compare with the raw read-back')).toBe('0');
    const { ours, ref } = report('zstd1');
    expect(ours, why('allocated size vs convert -c')).toBeLessThanOrEqual(ref * BEFORE_ADMIN_COMPACTION);
  });

  it('zstd: after overwriting half the files and compacting the served LUN online: clean, equal, <= 1.25x convert -c', () => {
    expect(r('overwrite_half'), why('overwrite')).toBe('ok');
    expect(r('compact'), why('tcmu-ts image compact z1 (online)')).toBe('0');
    expect(r('qemu_check_zstd2'), why('qemu-img check after compaction')).toBe('0');
    expect(r('qemu_compare_zstd2'), why('qemu-img compare after compaction')).toBe('0');
    console.log(`[compress-lun] zstd2: before compaction ${r('size_before_compact')} B; fio still running at its end: ${r('fio_still_running_at_compact_end')}`);
    const { ours, ref } = report('zstd2');
    expect(ours, why('allocated size vs convert -c after compaction')).toBeLessThanOrEqual(ref * 1.25);
  });

  it('zstd: tcmu-ts status --space reports the served image: logical size, compressed clusters, ratio > 1', () => {
    expect(r('status_space'), why('status --space of LUN z1: "logicalSize compressed>0 ratio>1"')).toBe(`${512 << 20} true true`);
  });

  it('zstd: fio writing and verifying another region during the online compaction: no error', () => {
    expect(Number(r('fio_jobs_during_compact')), why('fio jobs run during compaction')).toBeGreaterThanOrEqual(1);
    expect(r('fio_failed_during_compact'), why('fio jobs that failed or did not verify')).toBe('0');
  });

  it('zlib: the same first part (automatic compaction, <= 1.15x)', () => {
    autoCompacted('auto_compact_zlib');
    for (const step of ['create_zlib', 'mkfs_zlib', 'mount_zlib', 'copy_zlib', 'umount_zlib', 'readback_zlib']) expect(r(step), why(step)).toBe('ok');
    expect(r('qemu_check_zlib'), why('qemu-img check')).toBe('0');
    expect(r('qemu_compare_zlib'), why('qemu-img compare')).toBe('0');
    const { ours, ref } = report('zlib');
    expect(ours, why('allocated size vs convert -c (zlib)')).toBeLessThanOrEqual(ref * BEFORE_ADMIN_COMPACTION);
  });

  it('an image from qemu-img convert -c is read and written correctly through a compress=zstd LUN', () => {
    expect(r('conv_read'), why('read of the converted image')).toBe('same');
    expect(r('conv_check'), why('qemu-img check after writes')).toBe('0');
    expect(r('conv_compare'), why('qemu-img compare after writes')).toBe('0');
  });

  it('tears down cleanly; the runner logged no errors', () => {
    for (const tag of ['z0', 'z1', 'l0', 'c0']) expect(r(`teardown_${tag}`), why(`teardown of ${tag}`)).toBe('ok');
    expect(r('runner_log_errors'), why('runner error lines')).toBe('0');
  });
});
