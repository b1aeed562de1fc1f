// tcmu-ts next to Debian's tcmu-runner 1.5.4 in the VM (issue 20, part 2):
// tcmu-runner owns the D-Bus name and answers for its user:qcow LUN, tcmu-ts
// answers only for its user:file LUN, both serve I/O on one loopback target
// into their own images; a tcmu-ts device made by hand without
// nl_reply_supported=-1 is refused by tcmu-runner's first answer and tcmu-ts
// closes what it opened. The guest side is test/kernel/scenarios/coexist.sh.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REFUSED_RC, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/coexist.sh'), 'utf8');

/** Debian's tcmu-runner on the host (the guest sees the host's root), installed on demand as the benches do. */
function needTcmuRunner(): void {
  const r = spawnSync('bash', ['-c', `. "${join(REPO, 'scripts/vm/need-tcmu-runner.sh')}" && need_tcmu_runner coexist`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`tcmu-runner is needed for this test and could not be installed: ${r.stderr.trim()}`);
}

describeKernel('tcmu-ts and tcmu-runner side by side', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    needTcmuRunner();
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[coexist] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('tcmu-runner keeps org.kernel.TCMUService1; tcmu-ts leaves it alone and says who owns it', () => {
    expect(r('dbus'), why('system bus')).toBe('ok');
    expect(r('tr_name'), why('tcmu-runner owns the name')).toBe('ok');
    expect(r('ts_ready'), why('tcmu-ts serve ready')).toBe('ok');
    expect(r('ts_dbus_reason'), why('tcmu-ts log names tcmu-runner (pid) and its user:qcow handler')).toBe('1');
    expect(r('name_owner'), why('owner after tcmu-ts started')).toBe('tcmu-runner');
    expect(r('ls_user_qcow'), why('targetcli lists the owner\'s handlers')).toBe('1');
    expect(r('ls_user_file'), why('targetcli cannot list tcmu-ts\'s handlers then')).toBe('0');
  });

  it('tcmu-ts sees tcmu-runner and creates its config LUN with nl_reply_supported=-1, which it alone serves', () => {
    expect(r('ts_saw_runner'), why('warning naming the other runner')).toBe('1');
    expect(r('ts_left_rbd'), why('rbd, which both have, left to tcmu-runner by default')).toBe('1');
    expect(r('f0_nl_reply'), why('config LUN created with nl_reply_supported=-1')).toBe('1');
    expect(r('f0_enabled'), why('f0 enabled despite tcmu-runner')).toBe('1');
    expect(r('f0_holders'), why('who holds f0\'s uio')).toBe('ts=yes tr=no');
  });

  it('tcmu-runner alone serves its user:qcow LUN; tcmu-ts does not answer for it and logs that', () => {
    expect(r('c0_enabled'), why('c0 enabled (tcmu-runner answered)')).toBe('1');
    expect(r('c0_holders'), why('who holds c0\'s uio')).toBe('ts=no tr=yes');
    expect(r('ts_left_c0'), why('tcmu-ts log: left to the other runner')).toBe('1');
  });

  it('both LUNs on one loopback target serve I/O, each into its own runner\'s image', () => {
    expect(r('export'), why('loopback export of both')).toBe('ok');
    for (const k of ['dd_f', 'dd_c']) expect(r(k), why(k)).toBe('ok');
    expect(r('f_readback'), why('tcmu-ts LUN read back')).toBe('same');
    expect(r('c_readback'), why('tcmu-runner LUN read back')).toBe('same');
    expect(r('f_in_image'), why('f0.img holds what was written to LUN 0')).toBe('yes');
    expect(r('c_in_image'), why('c0.img holds what was written to LUN 1')).toBe('yes');
  });

  it('a tcmu-ts device made without nl_reply_supported=-1 loses the race to tcmu-runner\'s refusal; tcmu-ts keeps nothing of it', () => {
    expect(r('p0_enable_rc'), why('enable of p0')).toMatch(REFUSED_RC);
    expect(r('p0_enabled'), why('p0 left disabled by the kernel')).toBe('0');
    expect(r('p0_served'), why('p0 in tcmu-ts status')).toBe('0');
    expect(r('p0_ts_fds'), why('uio fds tcmu-ts holds (f0 only)')).toBe('1');
  });

  it('afterwards both LUNs still serve, and tcmu-ts logged no error besides the refused device', () => {
    expect(r('f_after'), why('tcmu-ts LUN after the race')).toBe('same');
    expect(r('c_after'), why('tcmu-runner LUN after the race')).toBe('same');
    expect(r('ts_errors_a'), why('error lines in the tcmu-ts log')).toBe('0');
    expect(r('teardown'), why('teardown')).toBe('ok');
  });

  it('started first, tcmu-ts owns the name and keeps it when tcmu-runner starts', () => {
    expect(r('b_ts_owner'), why('tcmu-ts registered first')).toBe('yes');
    expect(r('b_owner_with_both'), why('owner with both running')).toBe('tcmu-ts');
  });

  it('alone, tcmu-ts never answers for a tcmu-runner device: the enable waits, tcmu-ts says how to end that', () => {
    expect(r('c2_waiting'), why('enable of a user:qcow device with no tcmu-runner')).toBe('yes');
    expect(r('c2_ts_warned'), why('warning with the reset_netlink advice')).toBe('1');
    expect(r('ts_errors_c'), why('error lines in the tcmu-ts log')).toBe('0');
    expect(r('runner_exit'), why('tcmu-ts clean exit')).toBe('0');
  });
});
