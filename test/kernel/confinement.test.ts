// Path confinement against the real kernel, in one boot: a daemon with
// allowed_dirs serves a good LUN under a verifying fio loop while crafted
// LUNs (qcow2 backing /etc/passwd, a ../ backing name, a symlink leading out,
// a '?' path, RECONFIG of dev_config to a file outside) are each refused with
// a log line; strace on the daemon shows no open ever yielded a file outside.
// Guest side: test/kernel/scenarios/confinement.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/confinement.sh'), 'utf8');
const A = '/mnt/scratch/allowed';

describeKernel('path confinement: every open beneath allowed_dirs, on add and RECONFIG', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[confinement] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
    console.log(`[confinement] fio loops ok=${r('fio_ok')} failed=${r('fio_bad')}; strace: ${r('trace_lines')} open lines, ${r('trace_refused')} refused by openat2`);
  });

  it('serves the good LUN from inside allowed_dirs, traced by strace', () => {
    expect(r('runner'), why('tcmu-ts serve --config (allowed_dirs)')).toBe('ok');
    if (process.env.CI) expect(r('strace'), why('strace in the guest')).toBe('attached');
    expect(r('good_lun'), why('good file LUN exported on tcm_loop')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('marker_write'), why('marker write to the good LUN')).toBe('ok');
  });

  it('refuses a qcow2 image (inside) whose backing file is /etc/passwd, with a log line naming it', () => {
    expect(r('qcow2_passwd'), why('enable of a qcow2 LUN backed by /etc/passwd')).toBe('refused');
    expect(r('qcow2_passwd_log'), why('runner log line for the /etc/passwd backing file')).toBe('ok');
  });

  it('refuses a qcow2 image whose relative backing name climbs out with ../', () => {
    expect(r('qcow2_climb'), why('enable of a qcow2 LUN backed by ../outside/base.raw')).toBe('refused');
    expect(r('qcow2_climb_log'), why('runner log line for the ../ backing file')).toBe('ok');
  });

  it('refuses a file LUN whose path is a symlink leading out', () => {
    expect(r('file_symlink'), why('enable of a file LUN through an escaping symlink')).toBe('refused');
    expect(r('file_symlink_log'), why('runner log line for the symlink')).toBe('ok');
  });

  it("refuses a path whose '?' once split the checked path from the opened one", () => {
    expect(r('file_question'), why("enable of file/<allowed>/q?/../../outside/secret.img")).toBe('refused');
    expect(r('file_question_log'), why("runner log line for the '?' path")).toBe('ok');
  });

  it('refuses a RECONFIG of dev_config to a file outside (directly or via a symlink); the LUN keeps its old file', () => {
    expect(r('good_dev_config'), why('dev_config of the good LUN')).toBe(`file/${A}/good.img`);
    expect(r('reconfig_outside'), why('dev_config write to a file outside')).toBe('refused');
    expect(r('reconfig_outside_log'), why('runner log line for the refused RECONFIG')).toBe('ok');
    expect(r('reconfig_symlink'), why('dev_config write to a symlink leading out')).toBe('refused');
    expect(r('dev_config_after'), why('dev_config after the refused RECONFIGs')).toBe(`file/${A}/good.img`);
    expect(r('marker_after'), why('marker read back through the LUN after the refusals')).toBe(r('marker'));
  });

  it('keeps the good LUN serving verified I/O throughout', () => {
    expect(Number(r('fio_ok')), why('fio loops that passed')).toBeGreaterThan(0);
    expect(r('fio_bad'), why('fio loops that failed verification or I/O')).toBe('0');
  });

  it('still accepts a RECONFIG to a file inside (the refusals were about the paths)', () => {
    expect(r('reconfig_inside'), why('dev_config write to good2.img inside')).toBe('accepted');
    expect(r('marker_reconfigured'), why('marker read through the reconfigured LUN')).toBe(r('marker'));
  });

  it('never opens anything outside allowed_dirs, and never changes it', () => {
    expect(r('fd_outside'), why('daemon fds naming a path outside')).toBe('0');
    expect(r('out_sum_after'), why('files outside changed')).toBe(r('out_sum_before'));
    if (r('strace') === 'attached') {
      expect(Number(r('trace_good2')), why('strace saw the allowed RECONFIG open (the trace works)')).toBeGreaterThan(0);
      expect(r('trace_outside'), why('opens that returned an fd outside allowed_dirs')).toBe('0');
      expect(Number(r('trace_refused')), why('openat2 calls the kernel refused (symlink, ../, ?)')).toBeGreaterThanOrEqual(3);
    } else {
      console.warn('[confinement] strace missing in the guest: checked the fd table only');
    }
  });

  it('tears down cleanly and the daemon exits 0', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
    expect(run.ok, why('guest run')).toBe(true);
  });
});
