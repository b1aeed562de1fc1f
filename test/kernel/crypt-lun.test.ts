// Acceptance of the crypt layer against the real kernel, in one boot (guest
// side: test/kernel/scenarios/crypt-lun.sh): LUKS containers from cryptsetup
// served as `crypt/;key=..>file//..` LUNs read back what dm-crypt wrote; an
// image made by `tcmu-ts image create --encrypt luks2` and filled through
// its LUN (ext4 tree, fio verify) opens in dm-crypt with a clean fsck and the
// same checksums; a wrong key and an open key file are refused; the key is in
// neither the log nor `status`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/crypt-lun.sh'), 'utf8');

describeKernel('encrypted LUNs (crypt/;key=..>file//..) on tcm_loop', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 1500 });
    console.log(`[crypt-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it.each([
    ['cs512', '512'],
    ['cs4096', '4096'],
    ['csl1', '512'],
  ])('%s: cryptsetup made it, dm-crypt wrote it, the initiator reads exactly that data', (name, block) => {
    expect(r(`${name}_image`), why(`cryptsetup/dm-crypt setup of ${name}`)).toBe('ok');
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r(`${name}_export`), why(`export of ${name}`)).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r(`${name}_block`), why(`logical block size of ${name}`)).toBe(block);
    expect(r(`${name}_sum`), why(`data of ${name} through the LUN`)).toBe(r('pattern'));
  });

  it('tcmu-ts image create --encrypt luks2: ext4 tree and fio verify through the LUN', () => {
    expect(r('ts_create'), why('tcmu-ts image create')).toBe('ok');
    expect(r('ts_info'), why('tcmu-ts image info')).toMatch(/format: luks2 .*sectorSize: 512/);
    expect(r('ts_export'), why('export of ts0')).toMatch(/^\/dev\/sd[a-z]+$/);
    for (const step of ['mkfs', 'mount', 'copy', 'umount', 'remount', 'fio']) expect(r(step), why(`step ${step}`)).toBe('ok');
    expect(r('tree_sum_copy'), why('tree copied onto the encrypted LUN')).toBe(r('tree_sum_src'));
  });

  it('with the LUN removed, dm-crypt opens the image: fsck clean, same tree and fio file', () => {
    expect(r('dm_open'), why('cryptsetup open of the tcmu-ts image')).toBe('ok');
    expect(r('dm_fsck'), why('fsck.ext4 -fn through dm-crypt')).toBe('0');
    expect(r('dm_tree_sum'), why('tree through dm-crypt')).toBe(r('tree_sum_src'));
    expect(r('dm_fio_sum'), why('fio file through dm-crypt')).toBe(r('fio_sum'));
  });

  it('a wrong key: refused, the log names the LUN and says "no keyslot matches", the image is unchanged', () => {
    expect(r('wrong_lun'), why('LUN with a wrong key')).toBe('refused');
    expect(r('wrong_log'), why('runner log line for the wrong key')).toBe('ok');
    expect(r('wrong_image_unchanged'), why('image bytes after the refused open')).toBe('yes');
  });

  it('a key file others can read: refused', () => {
    expect(r('open_key_lun'), why('LUN with a 0644 key file')).toBe('refused');
    expect(r('open_key_log'), why('runner log line for the open key file')).toBe('ok');
  });

  it('the key appears neither in the runner log nor in status', () => {
    expect(r('status_rc'), why('tcmu-ts status')).toBe('0');
    expect(r('leak_log'), why('key bytes in the runner log')).toBe('0');
    expect(r('leak_status'), why('key bytes in status')).toBe('0');
    expect(r('leak_log_final'), why('key bytes in the runner log after stop')).toBe('0');
    expect(r('teardown'), why('teardown')).toBe('ok');
  });
});
