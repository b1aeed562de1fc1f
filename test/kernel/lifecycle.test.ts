// The daemon's lifecycle against the real kernel: netlink add/remove of many
// LUNs, config-file LUNs, single instance, path confinement, SIGKILL restarts
// under verified I/O, online resize, a hung handler isolated from other LUNs,
// and task management (ABORT TASK, LUN RESET). One VM boot per scenario;
// the guest sides are test/kernel/scenarios/*.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REFUSED_RC, REPO, runGuestScript, type GuestRun } from './vm.js';

const scenario = (name: string) => readFileSync(join(REPO, 'test/kernel/scenarios', `${name}.sh`), 'utf8');

function boot(name: string, timeoutSec: number): { run: () => GuestRun; r: (k: string) => string | undefined; why: (w: string) => string } {
  let run: GuestRun;
  beforeAll(async () => {
    run = await runGuestScript(scenario(name), { timeoutSec });
    const outages = one(run, 'restart_ms');
    console.log(`[${name}] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s${outages ? `; kill-to-serving ms: ${outages}` : ''}`);
  });
  return { run: () => run, r: (k) => one(run, k), why: (w) => explain(run, w) };
}

describeKernel('daemon: LUN churn, config file, single instance, confinement', () => {
  const { run, r, why } = boot('lun-churn', 900);

  it('creates, serves and exports the LUN declared in the config file', () => {
    expect(r('runner'), why('tcmu-ts serve --config')).toBe('ok');
    expect(r('config_lun_disk'), why('config LUN exported on tcm_loop')).toBe('ok');
  });
  it("sets the export's completion affinity: current (-2) by default on tcm_loop, submitter (-1) when asked", () => {
    expect(r('config_lun_affinity'), why('cmd_completion_affinity of the config LUN target')).toBe('-2');
    expect(r('cli_export_affinity'), why('cmd_completion_affinity after lun export --completion-affinity submitter')).toBe('-1');
  });
  it('refuses to start a second daemon', () => {
    expect(r('second_rc'), why('second instance exit code')).toMatch(REFUSED_RC);
    expect(r('second_refused'), why('second instance message')).toBe('ok');
  });
  it('refuses a backing path outside allowed_dirs, with a reason', () => {
    expect(r('confined_rc'), why('lun create outside allowed_dirs')).toMatch(REFUSED_RC);
    expect(r('confined_message'), why('lun create error message')).toBe('ok');
  });
  it('answers every netlink event for 20 LUNs created and removed while running', () => {
    expect(r('churn_created'), why('LUN creations that completed')).toBe('20');
    expect(r('churn_served'), why('LUNs the daemon reports serving')).toBe('20');
    expect(r('churn_deleted'), why('LUN removals that completed')).toBe('20');
    expect(r('churn_left'), why('LUNs still served after removal')).toBe('0');
    expect(r('lun_list_count'), why('lun list after the churn (only the config LUN)')).toBe('1');
    expect(r('hung_tasks'), why('hung tasks in the kernel log')).toBe('0');
    expect(r('runner_exit'), why('daemon exit status after SIGTERM')).toBe('0');
    expect(run().ok, why('scenario')).toBe(true);
  });
});

describeKernel('daemon: SIGKILL and restart 10 times under fio --verify', () => {
  const { run, r, why } = boot('restart', 900);

  it('restarts 10 times while fio writes and verifies', () => {
    expect(r('create'), why('lun create')).toBe('ok');
    expect(r('kills'), why('kills')).toBe('10');
    expect(r('kills_under_io'), why('kills while the initiator had commands in flight on the LUN')).toBe('10');
    expect(r('restarts'), why('restarts that served the LUN again')).toBe('10');
  });
  it('fio jobs running through every kill complete without errors and verify (crc32c)', () => {
    expect(Number(r('fio_jobs')), why('fio jobs run during the kills')).toBeGreaterThanOrEqual(2);
    expect(r('fio_failed'), why('fio jobs with an error or a verify failure')).toBe('0');
  });
  it('every write acknowledged with O_SYNC before a kill reads back intact', () => {
    expect(r('markers_written'), why('marker writes')).toBe('10');
    expect(r('markers_intact'), why('markers read back')).toBe('10');
  });
  it('the kernel reports no hung task and no I/O error', () => {
    expect(r('hung_tasks'), why('hung tasks')).toBe('0');
    expect(r('io_errors'), why('I/O errors in the kernel log')).toBe('0');
    expect(run().ok, why('scenario')).toBe(true);
  });
});

describeKernel('daemon: online resize through RECONFIG', () => {
  const { run, r, why } = boot('resize', 600);

  it('grows the LUN: backing file, unit attention, new capacity', () => {
    expect(r('cap_before'), why('capacity before')).toBe(String(256 << 20));
    expect(r('reconfig'), why('dev_size write (waits for RECONFIG_DEVICE_DONE)')).toBe('ok');
    expect(Number(r('backing_size')), why('backing file size after resize')).toBeGreaterThanOrEqual(512 << 20);
    expect(r('ua'), why('CAPACITY DATA HAS CHANGED unit attention')).toBe('ok');
    expect(r('cap_after'), why('READ CAPACITY after resize')).toBe(String(512 << 20));
    expect(r('blockdev_size'), why('block device size after rescan')).toBe(String(512 << 20));
  });
  it('writes and reads past the old end', () => {
    expect(r('write_past'), why('write at 384 MiB')).toBe('ok');
    expect(r('readback'), why('read back at 384 MiB')).toBe('ok');
  });
  it('refuses a subtype change and keeps serving', () => {
    expect(r('subtype_change'), why('dev_config change to another subtype')).toBe('refused');
    expect(r('still_serving'), why('I/O after the refused reconfig')).toBe('ok');
    expect(run().ok, why('scenario')).toBe(true);
  });
});

describeKernel('daemon: hung handler isolation, ABORT TASK and LUN RESET', () => {
  const { run, r, why } = boot('hang-tmr', 600);

  it('serves both LUNs', () => {
    expect(r('runner'), why('runner with a user handler from the config')).toBe('ok');
    expect(r('export_n0'), why('normal LUN export')).toMatch(/^\/dev\/sd/);
    expect(r('export_h0'), why('gated LUN export')).toMatch(/^\/dev\/sd/);
  });
  it('keeps the other LUN serving while one handler hangs', () => {
    expect(r('fio_during_err'), why('fio on the healthy LUN during the hang')).toBe('0');
    const base = Number(r('iops_base'));
    const during = Number(r('iops_during'));
    expect(base, why('baseline IOPS')).toBeGreaterThan(0);
    expect(during, why('IOPS during the hang')).toBeGreaterThan(0);
    console.log(`[hang-tmr] healthy LUN 4k randread qd16: ${base} IOPS before, ${during} during the hang (ratio ${(during / base).toFixed(2)})`);
  });
  it('detects and reports the stuck LUN, then its recovery', () => {
    expect(Number(r('h0_status')), why('stuckEvents in tcmu-ts status')).toBeGreaterThanOrEqual(1);
    expect(Number(r('stuck_logged')), why('stuck log line')).toBeGreaterThanOrEqual(1);
    expect(Number(r('recovered_logged')), why('recovered log line')).toBeGreaterThanOrEqual(1);
  });
  it('ABORT TASK and LUN RESET reach the runner and complete', () => {
    expect(r('abort_seen'), why('the initiator timeout sent ABORT TASK')).toBe('ok');
    expect(r('abort_done'), why('ABORT TASK completed')).toBe('ok');
    expect(Number(r('h0_inflight_at_reset')), why('handler calls still pending when sg_reset -d started')).toBeGreaterThanOrEqual(1);
    expect(r('reset_reached_runner'), why('LUN RESET reached the runner while the handler held a command')).toBe('ok');
    expect(Number(r('tmr_abort')), why('ABORT TASK TMRs seen by the runner')).toBeGreaterThanOrEqual(1);
    expect(Number(r('tmr_lun_reset')), why('LUN RESET TMRs seen by the runner')).toBeGreaterThanOrEqual(1);
    expect(r('reset_rc'), why('sg_reset -d exit status')).toBe('0');
  });
  it('the hung LUN recovers when its handler returns', () => {
    expect(r('h0_recovered'), why('I/O on the gated LUN after the gate opened')).toBe('ok');
    expect(r('hung_tasks'), why('hung tasks')).toBe('0');
    expect(run().ok, why('scenario')).toBe(true);
  });
});
