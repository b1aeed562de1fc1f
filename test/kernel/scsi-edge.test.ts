// SCSI edge cases through the real kernel, in one boot: WRITE SAME(16) UNMAP
// (zero block, NDOB), UNMAP and WSNZ on a file, a qcow2 and a ram LUN with
// sg3-utils; persistent reservations (emulated by the target core, with the
// writable dbroot the test bed sets) from two tcm_loop nexuses.
// Guest side: test/kernel/scenarios/scsi-edge.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/scsi-edge.sh'), 'utf8');
const HANDLERS = ['file', 'qcow2', 'ram'];

describeKernel('SCSI edge cases through the kernel (WRITE SAME UNMAP, persistent reservations)', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);
  const sum = (key: string) => {
    const v = r(key);
    expect(v, why(`reference checksum ${key} missing`)).toMatch(/^[0-9a-f]{64}$/);
    return v;
  };

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[scsi-edge] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
    // Not asserted (as in file-lun): error-level lines the runner logged (seen: netlink replies racing the SIGTERM shutdown).
    const errs = Number(r('runner_log_errors') ?? 0);
    if (errs > 0) console.warn(`[scsi-edge] runner logged ${errs} error line(s):\n${(run.logs.get('runner') ?? []).filter((l) => /"level":[56]0/.test(l)).join('\n')}`);
  });

  it('serves a file, a qcow2 and a ram LUN on tcm_loop', () => {
    expect(r('create'), why('TCMU device creation')).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    for (const h of HANDLERS) expect(r(`export_${h}`), why(`export of the ${h} LUN`)).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it.each(HANDLERS)('%s: reports LBPRZ=1 and WSNZ=1', (h) => {
    expect(r(`lbprz_${h}`), why(`sg_readcap -l lbprz (${h})`)).toBe('1');
    expect(r(`wsnz_${h}`), why(`sg_vpd -p 0xb0 WSNZ (${h})`)).toBe('1');
  });

  it.each(HANDLERS)('%s: WRITE SAME(16) UNMAP, NDOB and UNMAP over whole and partial granules read back as zeros', (h) => {
    expect(r(`ws_${h}_before`), why(`${h}: the data written before`)).toBe(sum('ws_orig'));
    expect(r(`ws_${h}_cmd_failures`), why(`${h}: sg_write_same / sg_unmap failures`)).toBe('0');
    expect(r(`ws_${h}_after`), why(`${h}: the ranges must read as zeros, the rest unchanged`)).toBe(sum('ws_expect'));
  });

  it.each(HANDLERS)('%s: NUMBER OF LOGICAL BLOCKS 0 is ILLEGAL REQUEST / INVALID FIELD IN CDB and writes nothing', (h) => {
    expect(r(`wsnz_${h}_rc`), why(`${h}: sg_raw WRITE SAME(16) UNMAP with 0 blocks must fail`)).not.toBe('0');
    expect(r(`wsnz_${h}_key`), why(`${h}: sense key`)).toBe('Illegal Request');
    expect(r(`wsnz_${h}_asc`), why(`${h}: additional sense`)).toBe('Invalid field in cdb');
    expect(r(`wsnz_${h}_after`), why(`${h}: data after the refused WRITE SAME`)).toBe(sum('ws_expect'));
  });

  it('MODE SELECT WCE=0 survives a RECONFIG (file) and a snapshot revert (qcow2)', () => {
    for (const h of ['file', 'qcow2']) {
      expect(r(`mode_${h}_wce_before`), why(`${h}: WCE before MODE SELECT`)).toBe('1');
      expect(r(`mode_${h}_select`), why(`${h}: MODE SELECT(6) caching page`)).toBe('ok');
      expect(r(`mode_${h}_wce_selected`), why(`${h}: WCE after MODE SELECT`)).toBe('0');
    }
    expect(r('mode_reconfig'), why('dev_config RECONFIG of the file LUN')).toBe('ok');
    expect(r('mode_file_ua'), why('unit attention after RECONFIG')).toMatch(/medium may have changed/i);
    expect(r('mode_file_wce_after'), why('WCE after RECONFIG')).toBe('0');
    expect(r('mode_snapshot_create'), why('snapshot create')).toBe('ok');
    expect(r('mode_snapshot_revert'), why('snapshot revert')).toBe('ok');
    expect(r('mode_qcow2_ua'), why('unit attention after snapshot revert')).toMatch(/medium may have changed/i);
    expect(r('mode_qcow2_wce_after'), why('WCE after snapshot revert')).toBe('0');
  });

  it('EXTENDED COPY copies between two LUNs of the daemon (sg_xcopy)', () => {
    expect(r('xcopy_rc'), why('sg_xcopy file LUN -> ram LUN')).toBe('0');
    expect(r('xcopy_dst'), why('copied range on the ram LUN')).toBe(sum('xcopy_src'));
  });

  it('EXTENDED COPY to a LUN the daemon does not serve -> COPY ABORTED', () => {
    // sg3-utils exit status 10: sense key COPY ABORTED (the ASC is pinned in test/scsi/extended-copy.test.ts)
    expect(r('xcopy_foreign_rc'), why('sg_xcopy to the in-kernel fileio LUN')).toBe('10');
    expect(r('xcopy_foreign_sense'), why('sense of the refused copy')).toMatch(/copy aborted/i);
  });

  it.each(['Inquiry', 'CompareAndWrite', 'WriteSame16', 'Unmap', 'GetLBAStatus'])('passes libiscsi conformance suite ALL.%s (iscsi-test-cu over SG_IO)', (suite) => {
    expect(r('conf_tool'), why('iscsi-test-cu (libiscsi-bin) missing in the guest')).toBeUndefined();
    expect(Number(r(`conf_${suite}_ran`)), why(`${suite}: tests run`)).toBeGreaterThan(0);
    expect(r(`conf_${suite}_failed`), why(`${suite}: failed tests (see the conformance_${suite} log)`)).toBe('0');
  });

  it('the target core keeps PR state in the writable dbroot', () => {
    expect(r('dbroot'), why('configfs target/dbroot')).toBe('/run/target-db');
    expect(r('pr_export'), why('second tcm_loop nexus for the ram LUN')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it('two nexuses register; the reservation holder writes, the other gets RESERVATION CONFLICT', () => {
    expect(r('pr_register_a'), why('PR OUT REGISTER from nexus A')).toBe('ok');
    expect(r('pr_register_b'), why('PR OUT REGISTER from nexus B')).toBe('ok');
    expect(r('pr_keys'), why('PR IN READ KEYS')).toBe('0xaaaa 0xbbbb');
    expect(r('pr_reserve_a'), why('PR OUT RESERVE (write exclusive) from A')).toBe('ok');
    expect(r('pr_holder'), why('PR IN READ RESERVATION seen from B')).toBe('0xaaaa');
    expect(r('pr_type'), why('reservation type')).toMatch(/Write Exclusive/i);
    expect(r('pr_write_a'), why('WRITE from the holder')).toBe('ok');
    expect(r('pr_write_b'), why('WRITE from the other registrant')).toBe('conflict');
  });

  it('PREEMPT moves the reservation and drops the preempted key', () => {
    expect(r('pr_preempt_b'), why('PR OUT PREEMPT from B')).toBe('ok');
    expect(r('pr_keys_after'), why('keys after PREEMPT')).toBe('0xbbbb');
    expect(r('pr_holder_after'), why('holder after PREEMPT')).toBe('0xbbbb');
    expect(r('pr_write_a_after'), why('WRITE from the preempted nexus')).toBe('conflict');
    expect(r('pr_write_b_after'), why('WRITE from the new holder')).toBe('ok');
    expect(r('pr_clear'), why('PR OUT CLEAR')).toBe('ok');
    expect(r('pr_keys_cleared'), why('keys after CLEAR')).toBe('');
  });

  it('tears down cleanly and the runner exits 0', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
    expect(run.ok, why('guest run')).toBe(true);
  });
});
