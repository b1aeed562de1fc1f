// A LUN whose dev_config is a stack (example-passthrough over file, top
// first), through the real kernel in one boot: data crosses the layer both
// ways, UNMAP reaches the file, RECONFIG reopens another stack, malformed
// stacks are refused naming the layer. Guest side: scenarios/stack-lun.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const MiB = 1 << 20;
const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/stack-lun.sh'), 'utf8');
const IMG = '/mnt/scratch/stack/lower.img';

describeKernel('a stack written in dev_config (example-passthrough over file) served through tcm_loop', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 600 });
    console.log(`[stack-lun] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('creates the device with the stack as its dev_config and serves it', () => {
    expect(r('create'), why('TCMU device creation')).toMatch(/^\/dev\/uio\d+$/);
    expect(r('dev_config'), why('configfs keeps the stack string as written')).toBe(`example-passthrough/>file/${IMG}`);
    expect(r('runner'), why('tcmu-ts serve did not open the uio device')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it('reports the size and thin provisioning of the file below the layer', () => {
    expect(r('readcap_rc'), why('sg_readcap -l')).toBe('0');
    expect(r('readcap_blocks'), why('number of logical blocks')).toBe(String((256 * MiB) / 512));
    expect(r('readcap_lbpme'), why('LBPME passes through the layer')).toBe('1');
  });

  it('reads data written into the file, and writes reach the file', () => {
    expect(r('read_through'), why('data read through the stack differs from the file')).toBe(r('pattern'));
    expect(r('write'), why('dd through the stack')).toBe('ok');
    expect(r('write_in_file'), why('data written through the stack is not in the file')).toBe(r('written'));
    expect(r('sync'), why('SYNCHRONIZE CACHE through the stack')).toBe('ok');
    expect(r('fio'), why('fio --verify=crc32c through the stack')).toBe('ok');
  });

  it('turns blkdiscard on the stack into holes in the bottom file', () => {
    expect(Number(r('discard_max_bytes')), why('discard not enabled on the disk')).toBeGreaterThan(0);
    expect(r('discard'), why('blkdiscard failed')).toBe('ok');
    const freed = Number(r('discard_blocks_before')) - Number(r('discard_blocks_after'));
    // 32 MiB discarded = 65536 512-byte blocks; demand at least 3/4 of it back
    expect(freed, why(`freed ${freed} blocks`)).toBeGreaterThanOrEqual(49152);
  });

  it('reopens on a RECONFIG to another stack of the same subtype', () => {
    expect(r('reconfig'), why('write of attrib/dev_config')).toBe('ok');
    expect(r('dev_config_after')).toBe('example-passthrough/>file//mnt/scratch/stack/lower2.img');
    expect(r('read_after_reconfig'), why('data after RECONFIG is not the second file')).toBe(r('pattern2'));
  });

  it('refuses malformed stacks with a log line naming the layer', () => {
    expect(r('gt_in_path'), why("a '>' inside a path")).toBe('refused');
    expect(r('gt_in_path_log'), why('log line for the path with >')).toBe('ok');
    expect(r('unknown_option'), why('unknown option of the top layer')).toBe('refused');
    expect(r('unknown_option_log'), why('log line for the unknown option')).toBe('ok');
  });

  it('tears down cleanly and the runner exits 0 on SIGTERM', () => {
    expect(r('teardown'), why('configfs teardown')).toBe('ok');
    expect(r('runner_exit'), why('runner exit status')).toBe('0');
  });
});
