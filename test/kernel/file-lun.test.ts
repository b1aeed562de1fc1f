// Acceptance of the `file` handler against the real kernel, in one boot:
// a 1 GiB sparse file on the guest's ext4 scratch disk, served by
// `tcmu-ts serve`, exported on tcm_loop, driven by sg3-utils, ext4, fio and
// blkdiscard. The guest side is test/kernel/scenarios/file-lun.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const GiB = 1 << 30;
const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/file-lun.sh'), 'utf8');

describeKernel('file LUN on tcm_loop served by tcmu-ts', () => {
  let run: GuestRun;
  // r(key): the result, with everything needed to debug it when an expect fails
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[file-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
    // Not asserted (yet): error-level lines the runner logged during an orderly run.
    const errs = Number(r('runner_log_errors') ?? 0);
    if (errs > 0) console.warn(`[file-lun] runner logged ${errs} error line(s):\n${(run.logs.get('runner') ?? []).filter((l) => /"level":[56]0/.test(l)).join('\n')}`);
  });

  it('starts the runner and exports the LUN as a SCSI disk', () => {
    expect(r('create'), why('TCMU device creation')).toMatch(/^\/dev\/uio\d+$/);
    expect(r('runner'), why('tcmu-ts serve did not open the uio device')).toBe('ok');
    expect(r('export'), why('tcm_loop export (kernel scan of the LUN)')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it('answers INQUIRY as a disk (PDT 0) with a vendor', () => {
    expect(r('inq_rc'), why('sg_inq failed')).toBe('0');
    expect(r('inq_pdt'), why('peripheral device type')).toBe('0');
    expect(r('inq_vendor'), why('vendor identification')).toMatch(/\S/);
  });

  it('has VPD 0x83 device identification with an NAA designator', () => {
    expect(r('vpd83_rc'), why('sg_vpd -p 0x83 failed')).toBe('0');
    expect(Number(r('vpd83_naa')), why('NAA designators in VPD 0x83')).toBeGreaterThan(0);
  });

  it('has VPD 0xb0 block limits with a transfer and unmap limit', () => {
    expect(r('vpdb0_rc'), why('sg_vpd -p 0xb0 failed')).toBe('0');
    expect(Number(r('vpdb0_max_transfer')), why('maximum transfer length')).toBeGreaterThan(0);
    expect(Number(r('vpdb0_max_unmap')), why('maximum unmap LBA count')).toBeGreaterThan(0);
  });

  it('has VPD 0xb2 logical block provisioning with UNMAP supported', () => {
    expect(r('vpdb2_rc'), why('sg_vpd -p 0xb2 failed')).toBe('0');
    expect(r('vpdb2_lbpu'), why('LBPU bit')).toBe('1');
  });

  it('reports 1 GiB of 512-byte blocks, thin provisioned, in READ CAPACITY(16)', () => {
    expect(r('readcap_rc'), why('sg_readcap -l failed')).toBe('0');
    expect(r('readcap_block_len'), why('logical block length')).toBe('512');
    expect(r('readcap_blocks'), why('number of logical blocks')).toBe(String(GiB / 512));
    expect(r('readcap_lbpme'), why('LBPME')).toBe('1');
  });

  it('returns the caching and control mode pages', () => {
    expect(r('modes_rc'), why('sg_modes failed')).toBe('0');
    expect(r('modes_caching'), why('caching mode page (0x08)')).toBe('1');
    expect(r('modes_control'), why('control mode page (0x0a)')).toBe('1');
  });

  it('keeps an ext4 tree intact across umount and remount', () => {
    expect(Number(r('tree_files')), why('payload tree is empty')).toBeGreaterThan(100);
    for (const step of ['mkfs', 'mount', 'copy', 'umount', 'remount'])
      expect(r(step), why(`filesystem step ${step}`)).toBe('ok');
    expect(r('tree_sum_copy'), why('checksums of the copied tree differ')).toBe(r('tree_sum_src'));
  });

  it('passes fio random writes (4k-1M, qd32, direct) with crc32c verification', () => {
    expect(r('fio'), why('fio --verify=crc32c')).toBe('ok');
  });

  it('turns blkdiscard into holes in the backing file', () => {
    expect(Number(r('discard_max_bytes')), why('the kernel did not enable discard on the disk')).toBeGreaterThan(0);
    expect(r('discard'), why('blkdiscard failed')).toBe('ok');
    const before = Number(r('discard_blocks_before'));
    const after = Number(r('discard_blocks_after'));
    // 64 MiB discarded = 131072 512-byte blocks; demand at least 3/4 of it back
    expect(before - after, why(`allocated 512B blocks before=${before} after=${after}`)).toBeGreaterThanOrEqual(98304);
  });

  it('rejects READ(16) and WRITE(16) beyond the end with ILLEGAL REQUEST / LBA OUT OF RANGE', () => {
    for (const op of ['read', 'write']) {
      expect(r(`oor_${op}_key`), why(`${op} at LBA=capacity: sense key`)).toBe('Illegal Request');
      expect(r(`oor_${op}_asc`), why(`${op} at LBA=capacity: asc 0x21`)).toBe('Logical block address out of range');
    }
  });

  it('tears down cleanly and the runner exits 0 on SIGTERM', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status after SIGTERM')).toBe('0');
    expect(run.ok, why('guest run')).toBe(true);
  });
});
