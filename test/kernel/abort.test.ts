// Aborts honoured by an abortable handler, against the real kernel: LUN
// RESET (sg_reset -d) and ABORT TASK (the initiator's timeout) reach the
// handler as an AbortSignal and finish while its I/O is still held back,
// long before the kernel's cmd_time_out. The guest side is
// test/kernel/scenarios/abort-honoured.sh; the handler that ignores aborts
// is covered by lifecycle.test.ts (hang-tmr).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

describeKernel('aborts honoured by the handler: LUN RESET and ABORT TASK', () => {
  let run: GuestRun;
  beforeAll(async () => {
    run = await runGuestScript(readFileSync(join(REPO, 'test/kernel/scenarios/abort-honoured.sh'), 'utf8'), { timeoutSec: 600 });
    console.log(`[abort-honoured] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });
  const r = (k: string) => one(run, k);
  const why = (w: string) => explain(run, w);

  it('serves the abortable LUN', () => {
    expect(r('runner'), why('runner with the abortable user handler')).toBe('ok');
    expect(r('create'), why('lun create')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd/);
  });
  it('a LUN RESET aborts the waiting call and completes while the gate is still closed', () => {
    expect(r('reset_parked'), why('a read waiting in the handler')).toBe('ok');
    expect(r('reset_rc'), why('sg_reset -d exit status')).toBe('0');
    expect(r('reset_gate_closed'), why('gate still closed when the reset finished')).toBe('yes');
    expect(Number(r('reset_aborted')), why('calls aborted by LUN RESET in the handler log')).toBeGreaterThanOrEqual(1);
    expect(r('dd1_rc'), why('the reset read finished once the gate opened')).not.toBe('stuck');
  });
  it('an ABORT TASK aborts the waiting call and completes while the gate is still closed', () => {
    expect(r('abort_parked'), why('a read waiting in the handler')).toBe('ok');
    expect(r('abort_done'), why('ABORT TASK answered FUNCTION COMPLETE')).toBe('ok');
    expect(r('abort_gate_closed'), why('gate still closed when the abort finished')).toBe('yes');
    expect(Number(r('abort_aborted')), why('calls aborted by ABORT TASK in the handler log')).toBeGreaterThanOrEqual(1);
    expect(r('dd2_done'), why('the initiator retry finished once the gate opened')).toBe('ok');
  });
  it('the runner saw both TMRs and the LUN serves normally afterwards', () => {
    expect(Number(r('tmr_lun_reset')), why('LUN RESET TMRs logged by the runner')).toBeGreaterThanOrEqual(1);
    expect(Number(r('tmr_abort')), why('ABORT TASK TMRs logged by the runner')).toBeGreaterThanOrEqual(1);
    expect(r('recovered'), why('write and read back after the aborts')).toBe('ok');
    expect(r('hung_tasks'), why('hung tasks')).toBe('0');
    expect(run.ok, why('scenario')).toBe(true);
  });
});
