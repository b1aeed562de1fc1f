// Crafted qcow2 images next to a good LUN, against the real kernel, in one
// boot (issue 16 findings 1-2): a good qcow2 LUN under fio --verify while LUNs
// on damaged images are added. The good LUN sees no error, the daemon stays
// up, each bad LUN fails cleanly with a log line naming its image and the
// reason. Guest side: test/kernel/scenarios/hostile-images.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/hostile-images.sh'), 'utf8');

describeKernel('crafted qcow2 images next to a good LUN', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(
      `[hostile-images] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s; fio jobs ${r('fio_jobs')} failed ${r('fio_failed')}; runner peak RSS ${r('runner_rss_kb')} kB`,
    );
  });

  it('builds the images with qemu-img at the layout the patches assume', () => {
    expect(r('good_image'), why('qemu-img create good.qcow2')).toBe('ok');
    expect(r('layout'), why('l1_table_offset, refcount_table_offset, L1[0] of b1')).toBe('0x30000 0x10000 0x8000000000040000');
  });

  it('serves the good LUN', () => {
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('good_create'), why('lun create g0')).toBe('ok');
    expect(r('good_export'), why('tcm_loop export of g0')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it('b1 (refcount entry at the L1): opens read-only, marked corrupt, writes refused, data still readable, L1 untouched', () => {
    expect(r('b1_create'), why('lun create b1')).toBe('ok');
    expect(r('b1_export'), why('export b1')).toBe('ok');
    expect(r('b1_write'), why('a write to b1 must be refused')).toBe('refused');
    expect(r('b1_read'), why('b1 data (0x11) reads back')).toBe('ok');
    expect(Number(r('b1_log')), why('log line naming b1 and the overlap')).toBeGreaterThan(0);
    expect(r('b1_corrupt_bit'), why('qemu-img info shows corrupt: true')).toBe('1');
    expect(r('b1_l1_intact'), why('L1[0] of b1 unchanged')).toBe('0x8000000000040000');
  });

  it('b2 (L2 offset 2^53): the read of that cluster fails, other clusters read, the reason is logged', () => {
    expect(r('b2_create'), why('lun create b2')).toBe('ok');
    expect(r('b2_export'), why('export b2')).toBe('ok');
    expect(r('b2_read'), why('read of the bad cluster')).toBe('refused');
    expect(r('b2_read_other'), why('read of an unallocated cluster of b2')).toBe('ok');
    expect(Number(r('b2_log')), why('log line naming b2 and the offset')).toBeGreaterThan(0);
  });

  it('b3 (its own backing file): refused with "backing chain loops", no descriptors kept', () => {
    expect(r('b3_create'), why('lun create b3 must fail')).toBe('fail');
    expect(Number(r('b3_log')), why('log line naming b3 and the loop')).toBeGreaterThan(0);
    expect(Number(r('b3_fd_growth')), why('runner descriptors after the refused open')).toBeLessThanOrEqual(2);
  });

  it('b4 (l1_size 0x7fffffff): refused naming the field', () => {
    expect(r('b4_create'), why('lun create b4 must fail')).toBe('fail');
    expect(Number(r('b4_log')), why('log line naming b4 and l1_size')).toBeGreaterThan(0);
  });

  it('the good LUN saw no error and the daemon stayed up and exits 0', () => {
    expect(Number(r('fio_jobs')), why('fio jobs on the good LUN')).toBeGreaterThan(0);
    expect(r('fio_failed'), why('fio jobs with errors on the good LUN')).toBe('0');
    expect(r('runner_alive'), why('runner process after the bad LUNs')).toBe('yes');
    expect(r('runner_unhandled'), why('unhandled rejections in the runner log')).toBe('0');
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
    expect(run.ok, why('guest run')).toBe(true);
  });
});
