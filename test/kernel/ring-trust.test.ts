// The real kernel hands the initiator only what the runner produced: a READ
// leaves 0xC3 in the data area, then TEST UNIT READY / SYNCHRONIZE CACHE /
// READ(10) with transfer length 0 / INQUIRY, each with a 4 KiB data-in
// buffer, must not return a single 0xC3 byte (the kernel ignores READ_LEN
// 0, so the runner zero-fills; INQUIRY's 36 bytes go out with READ_LEN).
// Guest side: test/kernel/scenarios/stale-data.sh.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/stale-data.sh'), 'utf8');

describeKernel('no stale data-in through the kernel', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 600 });
    console.log(`[stale-data] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s`);
  });

  it('serves and exports the LUN', () => {
    expect(r('runner'), why('runner start')).toBe('ok');
    expect(r('export'), why('tcm_loop export')).toMatch(/^\/dev\/sd[a-z]+$/);
  });

  it('a READ returns the 0xC3 pattern (and leaves it in the data area)', () => {
    expect(r('read8_rc'), why('sg_raw READ(10)')).toBe('0');
    expect(r('read8_bytes')).toBe('4096');
    expect(r('read8_c3')).toBe('4096');
  });

  it.each(['tur', 'sync', 'read0'])('%s with a 4 KiB data-in buffer returns no stale byte', (name) => {
    expect(r(`${name}_rc`), why(`sg_raw ${name}`)).toBe('0');
    expect(r(`${name}_c3`), why(`${name}: bytes of the earlier READ handed back`)).toBe('0');
  });

  it('INQUIRY returns its 36 bytes (READ_LEN residual) and nothing stale', () => {
    expect(r('inquiry_rc'), why('sg_raw INQUIRY')).toBe('0');
    expect(r('inquiry_bytes')).toBe('36');
    expect(r('inquiry_c3')).toBe('0');
  });

  it('still reads the data, and tears down cleanly', () => {
    expect(r('read8_again_c3')).toBe('4096');
    expect(r('teardown')).toBe('ok');
    expect(r('runner_log_errors')).toBe('0');
  });
});
