// qcow2's own LUKS encryption against the real kernel, in one boot (guest
// side: test/kernel/scenarios/qcow2-luks-lun.sh): an encrypted overlay made
// by `tcmu-ts image create --encrypt luks` on an encrypted base made by
// qemu-img (each with its own key), served as `qcow2/OVL;key=k1;backing_key=k2`:
// the base's data reads through the chain, ext4 + fio verify through the LUN,
// then qemu-img check and qemu-img compare (against a raw read-back of the
// LUN) with the runner stopped; a wrong key refused, the image unchanged.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/qcow2-luks-lun.sh'), 'utf8');

describeKernel('qcow2 LUKS encryption (qcow2/OVL;key=..;backing_key=..) on tcm_loop', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 1200 });
    console.log(`[qcow2-luks-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('images: qemu-img made the encrypted base, tcmu-ts the encrypted overlay', () => {
    expect(r('base_create'), why('qemu-img convert -o encrypt.format=luks')).toBe('ok');
    expect(r('ovl_create'), why('tcmu-ts image create --encrypt luks')).toBe('ok');
    expect(r('ovl_encrypted'), why('qemu-img info of the overlay')).toBe('1');
  });

  it("the base's data reads through the encrypted chain; ext4 and fio verify through the LUN", () => {
    expect(r('runner'), why('tcmu-ts serve')).toBe('ok');
    expect(r('export'), why('export of ql0')).toMatch(/^\/dev\/sd[a-z]+$/);
    expect(r('base_sum'), why('first 4 MiB through the LUN')).toBe(r('pattern'));
    for (const step of ['mkfs', 'mount', 'copy', 'umount', 'remount', 'fio', 'readback']) expect(r(step), why(`step ${step}`)).toBe('ok');
    expect(r('tree_sum_copy'), why('tree copied onto the encrypted LUN')).toBe(r('tree_sum_src'));
  });

  it('with the runner stopped, qemu-img check is clean and qemu-img compare matches the raw read-back', () => {
    expect(r('teardown'), why('teardown')).toBe('ok');
    expect(r('qemu_check'), why('qemu-img check of the overlay')).toBe('0');
    expect(r('qemu_compare'), why('qemu-img compare overlay vs LUN read-back')).toBe('0');
  });

  it('a wrong key: refused, the log names the LUN and says "no keyslot matches", the overlay is unchanged', () => {
    expect(r('wrong_lun'), why('LUN with the wrong key')).toBe('refused');
    expect(r('wrong_log'), why('runner log line for the wrong key')).toBe('ok');
    expect(r('wrong_unchanged'), why('overlay bytes after the refused open')).toBe('yes');
  });
});
