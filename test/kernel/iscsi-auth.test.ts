// iSCSI export access control against the real kernel target, in one boot:
// `tcmu-ts serve -c` exports a file LUN on 127.0.0.1:3260 to one listed
// initiator with CHAP; libiscsi's tools are the initiators. Guest side: test/kernel/scenarios/iscsi-auth.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REFUSED_RC, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/iscsi-auth.sh'), 'utf8');

describeKernel('iSCSI export with an initiator ACL and CHAP', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 600 });
    console.log(`[iscsi-auth] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('refuses a config written for the old defaults, saying what to add', () => {
    expect(r('old_config_rc'), why('tcmu-ts serve with export = "iscsi" and no initiators')).toMatch(REFUSED_RC);
    expect(r('old_config_msg'), why('error message')).toBe('lun.auth0.initiators: missing: an iSCSI export no longer admits every host by default');
  });

  it('refuses a CHAP key file readable by others before exporting anything, without printing the secret', () => {
    expect(r('open_key_rc'), why('tcmu-ts serve with a 0644 key file')).toMatch(REFUSED_RC);
    expect(r('open_key_msg'), why('error message')).toMatch(/^lun\.auth0\.chap: CHAP key file \/mnt\/scratch\/keys\/web1 is open to group or others$/);
    expect(r('open_key_leaks'), why('secret in the error output')).toBe('0');
  });

  it('exports with one ACL, CHAP enforced, on the written portal only', () => {
    expect(r('runner'), why('tcmu-ts serve -c')).toBe('ok');
    expect(r('export'), why('TPG enabled by the daemon')).toBe('ok');
    expect(r('np'), why('portals')).toBe('127.0.0.1:3260');
    expect(r('acls'), why('ACLs')).toBe('iqn.2026-11.io.tcmu-ts.test:allowed');
    expect(r('generate_node_acls'), why('demo mode')).toBe('0');
    expect(r('authentication'), why('attrib/authentication')).toBe('1');
    expect(r('acl_userid'), why('ACL CHAP user')).toBe('web1');
    expect(r('control_socket_mode'), why('control socket mode')).toBe('600');
  });

  it('lets the listed initiator with the right secret in: INQUIRY, READ CAPACITY, data read and write', () => {
    expect(r('good_inq'), why('iscsi-inq with the right secret')).toBe('ok');
    expect(r('good_vendor'), why('INQUIRY vendor (answered by tcmu-ts itself)')).toBe('TCMU-TS');
    expect(r('good_readcap'), why('iscsi-readcapacity16')).toBe('ok');
    expect(r('good_size'), why('READ CAPACITY size')).toBe(String(64 * 2 ** 20));
    expect(r('good_read'), why('iscsi-perf: 2 s of sequential READs')).toBe('ok');
    expect(r('good_read_finished'), why('iscsi-perf ran to the end')).toBe('1');
    expect(r('good_write'), why('iscsi-test-cu ALL.Write10.Simple')).toBe('ok');
    expect(r('write_landed'), why('the image changed after the WRITEs')).toBe('yes');
  });

  it('refuses a wrong secret, no CHAP, and initiator names not on the list', () => {
    for (const k of ['wrong_secret', 'no_chap', 'unlisted_initiator', 'default_initiator']) {
      expect(r(k), why(`${k}: login must be refused`)).toMatch(/^refused\(rc=\d+\)$/);
    }
  });

  it('keeps the secret out of the daemon log and its status', () => {
    expect(r('secret_in_runner_log'), why('secret in the runner log')).toBe('0');
    expect(r('secret_in_status'), why('secret in tcmu-ts status --json')).toBe('0');
  });

  it('applies the same rules to the CLI: no initiator is an error, "any" must be written', () => {
    expect(r('cli_no_initiator_rc'), why('lun create --export iscsi without --initiator')).toMatch(REFUSED_RC);
    expect(r('cli_no_initiator_msg'), why('error message')).toBe('1');
    expect(r('cli_no_initiator_made'), why('a LUN made despite the refused export')).toBe('0');
    expect(r('cli_any_rc'), why('lun create --export iscsi --initiator any')).toBe('0');
    expect(r('any_inq'), why('demo mode: any initiator gets in')).toBe('ok');
    expect(r('any_vendor'), why('INQUIRY vendor')).toBe('TCMU-TS');
  });

  it('with initiators "any" and CHAP, admits any initiator name only with the secret (TPG-wide auth)', () => {
    expect(r('cli_any_chap_rc'), why('lun create --initiator any --chap web1')).toBe('0');
    expect(r('any_chap_auth'), why('attrib authentication/generate_node_acls')).toBe('1/1');
    expect(r('any_chap_good'), why('right secret')).toBe('ok');
    expect(r('any_chap_wrong'), why('wrong secret')).toMatch(/^refused\(rc=\d+\)$/);
    expect(r('any_chap_none'), why('no CHAP')).toMatch(/^refused\(rc=\d+\)$/);
    expect(r('secret_in_cli_output'), why('secret in the CLI output')).toBe('0');
  });

  it('tears down cleanly', () => {
    expect(r('teardown'), why('teardown_all')).toBe('ok');
    expect(r('runner_exit'), why('runner exit code')).toBe('0');
  });
});
