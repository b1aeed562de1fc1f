// qcow2 durability on process death, against the real kernel: a fresh qcow2
// image served as a LUN, the daemon killed with SIGKILL and restarted 10 times
// while fio writes allocating data and verifies it; before each kill an
// acknowledged (not flushed) allocating write and an acknowledged UNMAP. All
// must survive every restart: a restart is invisible to the initiator, as for
// the `file` handler. Guest side: test/kernel/scenarios/qcow2-kill.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/qcow2-kill.sh'), 'utf8');

describeKernel('qcow2 LUN: SIGKILL and restart 10 times, nothing acknowledged is lost', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[qcow2-kill] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s; fio jobs ${r('fio_jobs')}, qemu-img check leaks ${r('qemu_check_leaks')}; kill-to-serving ms: ${r('restart_ms')}`);
  });

  it('serves a fresh qcow2 image that reports LBPRZ=1 and accepts UNMAP', () => {
    expect(r('image_create'), why('qemu-img create')).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('create'), why('lun create k0 --backstore qcow2')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
    // The discard checks below rely on these: zeros are what LBPRZ=1 promises.
    expect(r('lbprz'), why('READ CAPACITY(16) LBPRZ')).toBe('1');
    expect(Number(r('discard_max_bytes')), why('discard_max_bytes')).toBeGreaterThan(0);
    expect(r('disc_prefilled'), why('data written under the ranges to discard')).toBe('10');
    expect(r('disc_prefilled_nonzero'), why('ranges to discard hold data before the discards')).toBe('10');
  });

  it('is killed and restarted 10 times, each time with commands in flight', () => {
    expect(r('kills'), why('kills')).toBe('10');
    expect(r('kills_under_io'), why('kills while the initiator had commands in flight on the LUN')).toBe('10');
    expect(r('restarts'), why('restarts that served the LUN again')).toBe('10');
  });

  it('keeps every allocating write acknowledged just before a kill (no flush)', () => {
    expect(r('markers_written'), why('marker writes (O_DIRECT, not O_SYNC)')).toBe('10');
    expect(r('markers_after_restart'), why('marker read right after each restart')).toBe('10');
    expect(r('markers_intact'), why('markers read back at the end')).toBe('10');
  });

  it('keeps every UNMAP acknowledged just before a kill: the ranges read zeros', () => {
    expect(r('discards_done'), why('blkdiscard calls')).toBe('10');
    expect(r('discards_zero_after_restart'), why('discarded range read right after each restart')).toBe('10');
    expect(r('discards_zero'), why('discarded ranges read at the end')).toBe('10');
  });

  it('fio jobs running through every kill complete and verify (crc32c) without errors', () => {
    expect(Number(r('fio_jobs')), why('fio jobs run during the kills')).toBeGreaterThanOrEqual(2);
    expect(r('fio_failed'), why('fio jobs with an error or a verify failure')).toBe('0');
    expect(r('hung_tasks'), why('hung tasks')).toBe('0');
    expect(r('io_errors'), why('I/O errors in the kernel log')).toBe('0');
  });

  it('leaves an image qemu-img finds free of corruption (leaks allowed)', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
    expect(['0', '3'], why(`qemu-img check exit status ${r('qemu_check_rc')}`)).toContain(r('qemu_check_rc'));
    expect(r('qemu_check_corruptions'), why('qemu-img check corruptions')).toBe('0');
    expect(run.ok, why('scenario')).toBe(true);
  });
});
