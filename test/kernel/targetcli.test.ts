// targetcli-fb against tcmu-ts in the VM (issue 20 acceptance): the D-Bus
// service on a real system bus, user:<subtype> backstores created, refused,
// exported and cleared by targetcli itself, and the metrics endpoint agreeing
// with fio, and the daemon's log file rotated under it. The guest side is test/kernel/scenarios/targetcli.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/targetcli.sh'), 'utf8');

describeKernel('targetcli manages tcmu-ts backstores over D-Bus', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);
  const n = (key: string) => Number(r(key));

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 1200 });
    console.log(`[targetcli] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('registers on the system bus under the shipped policy', () => {
    expect(r('dbus'), why('dbus-daemon with the tcmu-ts policy')).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve registering org.kernel.TCMUService1')).toBe('ok');
  });

  it('targetcli lists user:file, user:qcow2 and user:ram with tcmu-ts ConfigDesc', () => {
    expect(r('ls_rc'), why('targetcli ls')).toBe('0');
    for (const h of ['file', 'qcow2', 'ram']) expect(n(`ls_user_${h}`), why(`user:${h} in targetcli ls`)).toBeGreaterThan(0);
    expect(n('help_configdesc'), why('help create shows ConfigDesc')).toBeGreaterThan(0);
  });

  it('creates user:file and user:qcow2 backstores that tcmu-ts serves', () => {
    for (const k of ['create_d0', 'create_q0', 'create_new']) expect(r(`${k}_rc`), why(`targetcli ${k}`)).toBe('0');
    expect(r('d0_enabled'), why('user:file d0 created and enabled')).toBe('1');
    expect(r('q0_enabled'), why('user:qcow2 q0 created and enabled')).toBe('1');
    expect(r('n0_enabled'), why('user:file with ;create=1')).toBe('1');
    expect(n('n0_file_size'), why('the ;create=1 file made at the LUN size')).toBe(16 << 20);
    expect(n('serving'), why('tcmu-ts logs LUN serving for each')).toBeGreaterThanOrEqual(3);
  });

  it('a cfgstring outside allowed_dirs makes targetcli print tcmu-ts reason and create nothing', () => {
    expect(n('bad_reason'), why('targetcli output of the refused create')).toBe(1);
    expect(r('bad_exists'), why('no device for the refused create')).toBe('no');
  });

  it('serves I/O after targetcli exports the LUN on loopback', () => {
    expect(r('export'), why('loopback export by targetcli')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('io_match'), why('4 MiB written and read back')).toBe('yes');
  });

  it('SIGHUP reload adds and removes a LUN from the config file while fio runs, and a broken file changes nothing', () => {
    expect(r('reload_add'), why('LUN r0 added by reload')).toBe('ok');
    expect(r('reload_bad'), why('broken file refused')).toBe('refused');
    expect(r('reload_bad_kept'), why('broken file changed nothing')).toBe('yes');
    expect(r('reload_remove'), why('LUN r0 removed by reload')).toBe('ok');
    expect(r('fio_rc'), why('fio on the other LUN during the reloads')).toBe('0');
  });

  it('log rotation (mv, then SIGHUP): the old file keeps the start, a new 0600 file takes what follows, no line lost or torn', () => {
    expect(n('rotated_old_has_start'), why('D-Bus registration line in the rotated file')).toBe(1);
    expect(r('rotated_new_mode'), why('mode of the reopened log file')).toBe('600');
    expect(n('rotated_new_has_reload'), why('r0 serving, logged after the SIGHUP, in the new file')).toBe(1);
    expect(r('log_lines_not_json'), why('lines of daemon.log.1 + daemon.log that are not one JSON object')).toBe('0');
    expect(n('serving'), why('LUN serving lines before the rotation')).toBeGreaterThanOrEqual(3);
  });

  it('metrics agree with fio within 1%, and histogram counts equal command counts', () => {
    expect(r('fio_rc'), why('fio')).toBe('0');
    expect(r('fio_errors'), why('fio errors')).toBe('0');
    for (const op of ['read', 'write']) {
      const fio = n(`fio_${op}_ios`);
      const metric = n(`metric_${op}_delta`);
      expect(fio, why(`fio ${op}s`)).toBeGreaterThan(0);
      expect(Math.abs(metric - fio) / fio, why(`${op}: metrics ${metric} vs fio ${fio}`)).toBeLessThanOrEqual(0.01);
      expect(n(`hist_${op}_delta`), why(`${op} histogram count`)).toBe(metric);
    }
    // The block layer may merge two adjacent 4 KiB reads of fio's random mix into one
    // command, so bytes are compared with fio's bytes, not with commands x 4096.
    const readBytes = n('metric_read_bytes_delta');
    const fioBytes = n('fio_read_bytes');
    expect(readBytes % 4096, why('read bytes are whole 4 KiB blocks')).toBe(0);
    expect(Math.abs(readBytes - fioBytes) / fioBytes, why(`read bytes: metrics ${readBytes} vs fio ${fioBytes}`)).toBeLessThanOrEqual(0.01);
    expect(r('metric_in_flight'), why('in flight after fio')).toBe('0');
    expect(n('metric_process'), why('process metrics')).toBe(1);
  });

  it('targetcli clearconfig removes everything and the daemon closes the LUNs', () => {
    expect(r('clear_rc'), why('targetcli clearconfig')).toBe('0');
    expect(n('stopped'), why('LUN stopped lines (r0 by reload, then d0, q0, n0)')).toBeGreaterThanOrEqual(4);
    expect(r('left_devices'), why('devices left in configfs')).toBe('0');
    expect(r('luns_in_metrics'), why('LUN series left in metrics')).toBe('0');
    expect(r('status_luns'), why('LUNs the daemon still serves')).toBe('0');
    expect(r('runner_exit'), why('clean daemon exit')).toBe('0');
    expect(r('unexpected_errors'), why('error lines in the daemon log besides the broken-config refusal')).toBe('0');
  });
});
