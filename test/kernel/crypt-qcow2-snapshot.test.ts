// Acceptance point 4 of the crypt layer against the real kernel (guest side:
// test/kernel/scenarios/crypt-qcow2-snapshot.sh): crypt over qcow2 over a
// file, the key handed to the running daemon by `tcmu-ts key add` (memory
// only), a live `snapshot create`, writes, `snapshot revert`: the data is
// what each step should show, through the LUN and then offline through
// qemu-img + cryptsetup; the key is in neither the log nor `status`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/crypt-qcow2-snapshot.sh'), 'utf8');

describeKernel('crypt over qcow2 over file: live snapshot create / revert through the stack', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 1500 });
    console.log(`[crypt-qcow2-snapshot] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  }, 1_560_000);

  it('serves crypt/;key=k1>qcow2/PATH with a key given only by `tcmu-ts key add`', () => {
    expect(r('cs_format'), why('cryptsetup luksFormat')).toBe('ok');
    expect(r('qcow2_convert'), why('qemu-img convert raw -> qcow2')).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('key_add'), why('tcmu-ts key add k1 < keyfile')).toBe('ok');
    expect(r('key_list'), why('tcmu-ts key list')).toBe('k1');
    expect(r('create'), why('TCMU device')).toMatch(/^\/dev\/uio\d+$/);
    expect(r('lun_open'), why('the runner opens the crypt LUN')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('initial_new_region'), why('a never-written region of a fresh container')).not.toBe(r('m3'));
  });

  it('a live snapshot: writes after it read back', () => {
    expect(r('write_m1'), why('write before the snapshot')).toBe('ok');
    expect(r('before_snap_region'), why('m1 through the stack')).toBe(r('m1'));
    expect(r('snap_create'), why('tcmu-ts snapshot create c0 snap1 (crypt over qcow2)')).toBe('ok');
    expect(r('write_m2'), why('overwrite after the snapshot')).toBe('ok');
    expect(r('write_m3'), why('write into the region the snapshot saw unwritten')).toBe('ok');
    expect(r('after_snap_region'), why('m2 after the snapshot')).toBe(r('m2'));
    expect(r('after_snap_new_region'), why('m3 after the snapshot')).toBe(r('m3'));
    expect(r('snap_list_has'), why('snap1 in tcmu-ts snapshot list c0')).toBe('1');
  });

  it('revert brings back what the snapshot saw, and the LUN keeps taking writes', () => {
    expect(r('snap_revert'), why('tcmu-ts snapshot revert c0 snap1')).toBe('ok');
    expect(r('after_revert_region'), why('m1 back after the revert')).toBe(r('m1'));
    expect(r('after_revert_new_region'), why('the unwritten region as before the snapshot')).toBe(r('initial_new_region'));
    expect(r('write_m4'), why('write after the revert')).toBe('ok');
    expect(r('after_revert_write'), why('m4 after the revert')).toBe(r('m4'));
  });

  it('offline, qemu-img and cryptsetup read the image as the LUN last showed it', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit code')).toBe('0');
    expect(r('qemu_check_rc'), why('qemu-img check')).toBe('0');
    expect(r('qemu_snapshot_has'), why('snap1 in qemu-img snapshot -l')).toBe('1');
    expect(r('qemu_to_raw'), why('qemu-img convert qcow2 -> raw')).toBe('ok');
    expect(r('dm_open'), why('cryptsetup open of the converted image')).toBe('ok');
    expect(r('dm_snap_region'), why('snapshot region through dm-crypt')).toBe(r('m1'));
    expect(r('dm_new_region'), why('post-revert write through dm-crypt')).toBe(r('m4'));
  });

  it('the key appears neither in the runner log nor in status', () => {
    expect(r('leak_log'), why('key in the runner log')).toBe('0');
    expect(r('status_leak'), why('key in tcmu-ts status')).toBe('0');
    expect(r('runner_log_errors'), why('error lines in the runner log')).toBe('0');
  });
});
