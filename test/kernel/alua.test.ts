// ALUA through the real kernel on a `file` LUN (no exclusive lock: the
// RBD gateways test covers the state following the lock). LIO keeps the
// port groups and enforces their states, TCMU passes INQUIRY and REPORT
// TARGET PORT GROUPS to the runner; Linux's own ALUA device handler is the
// oracle that reads what the runner reports.
// Guest side: test/kernel/scenarios/alua.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/alua.sh'), 'utf8');

describeKernel('ALUA target port groups through the kernel (file LUN, tcm_loop, Linux scsi_dh_alua)', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 600 });
    console.log(`[alua] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('serves the LUN on tcm_loop', () => {
    expect(r('create'), why('TCMU device creation')).toMatch(/^\/dev\/uio\d+$/);
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it("without a user-made group: TPGS 0 and REPORT TARGET PORT GROUPS refused (LIO's default group is not claimed)", () => {
    expect(r('plain_tpgs'), why('sg_inq TPGS')).toBe('0');
    expect(r('plain_rtpg_rc'), why('sg_rtpg exit status (5: illegal request)')).toBe('5');
    expect(r('plain_rtpg_refused'), why('sg_rtpg reason')).toBe('1');
  });

  it('in a group: INQUIRY DATA HAS CHANGED, then TPGS 1 and the target port designators in VPD 0x83', () => {
    expect(r('group'), why('configfs group setup')).toBe('ok');
    expect(r('inquiry_changed_ua'), why('the unit attention LIO raises on the group change')).toBe('1');
    expect(r('grouped_tpgs'), why('sg_inq TPGS')).toBe('1');
    expect(r('vpd83_relative_port'), why('VPD 0x83 relative target port')).toBe(`0x${Number(r('relative_port')).toString(16)}`);
    expect(r('vpd83_group'), why('VPD 0x83 target port group')).toBe('0x7');
  });

  it.each(['plain', 'ext'])('REPORT TARGET PORT GROUPS (%s header): group 7, active/optimized, the LUN port', (fmt) => {
    expect(r(`rtpg_${fmt}_rc`), why(`sg_rtpg ${fmt}`)).toBe('0');
    expect(r(`rtpg_${fmt}_extended`), why(`sg_rtpg ${fmt}: extended header seen`)).toBe(fmt === 'ext' ? '1' : '0');
    expect(r(`rtpg_${fmt}_group`)).toBe('0x7');
    expect(r(`rtpg_${fmt}_state`)).toBe('0x00');
    expect(Number(r(`rtpg_${fmt}_port`))).toBe(Number(r('relative_port')));
  });

  it("Linux's ALUA handler attaches, reads the group from VPD 0x83 and follows the state through REPORT TARGET PORT GROUPS", () => {
    expect(r('rescan'), why('disk rediscovered')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('dh_state'), why('device handler of the rediscovered disk')).toBe('alua');
    expect(r('dh_vpd'), why('what scsi_dh_alua logged')).toBe(`port group 7 rel port ${Number(r('relative_port')).toString(16)}`);
    expect(r('dh_access_initial'), why('access_state at attach')).toBe('active/optimized');
    expect(r('set_ano')).toBe('ok');
    expect(r('dh_access_ano'), why('access_state after the admin set active/non-optimized')).toBe('active/non-optimized');
    expect(r('dh_access_ao'), why('access_state after the admin set active/optimized again')).toBe('active/optimized');
  });

  it('tears down cleanly, the runner logs no error', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit')).toBe('0');
    expect(r('runner_log_errors'), why('runner error lines')).toBe('0');
  });
});
