// LUKS data compatibility with the real kernel's dm-crypt, both ways, in one
// boot (guest side: test/kernel/scenarios/crypt-compat.sh): cryptsetup
// formats and dm-crypt writes, tcmu-ts's crypt layer reads the same
// plaintext; tcmu-ts formats and writes, dm-crypt reads the same plaintext.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, expect, it } from 'vitest';
import { describeKernel, explain, one, REPO, runGuestScript, type GuestRun } from './vm.js';

const SCENARIO = readFileSync(join(REPO, 'test/kernel/scenarios/crypt-compat.sh'), 'utf8');
const FLAVOURS = ['luks2-argon2id-512', 'luks2-pbkdf2-4096', 'luks1'];

describeKernel('LUKS data: dm-crypt <-> tcmu-ts crypt layer', () => {
  let run: GuestRun;
  const r = (key: string) => one(run, key);
  const why = (what: string) => explain(run, what);

  beforeAll(async () => {
    run = await runGuestScript(SCENARIO, { timeoutSec: 900 });
    console.log(`[crypt-compat] status=${run.status} boot ${run.bootSec}s, whole run ${run.totalSec}s, modules: ${r('modules')}`);
  });

  it('has the plaintext checksum to compare with', () => {
    expect(r('data_sum'), why('data.bin checksum')).toMatch(/^[0-9a-f]{64}$/);
  });

  it.each(FLAVOURS)('%s: what dm-crypt wrote, tcmu-ts reads', (name) => {
    expect(r(`cs_${name}_sum`), why(`cryptsetup -> tcmu-ts (${name})`)).toBe(r('data_sum'));
  });

  it.each(FLAVOURS)('%s: what tcmu-ts formatted and wrote, cryptsetup accepts and dm-crypt reads', (name) => {
    expect(r(`ts_${name}_dump`), why(`cryptsetup luksDump of our ${name} image`)).toBe('ok');
    expect(r(`ts_${name}_sum`), why(`tcmu-ts -> dm-crypt (${name})`)).toBe(r('data_sum'));
  });
});
