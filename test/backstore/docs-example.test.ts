/**
 * The RAM disk example in docs/HANDLERS.md must work as printed: extract the
 * code block after its marker, load it as a user handler module, run it.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openDevConfig, registerUserHandler } from '../../src/backstore/registry.js';
import { silentLog } from './context.js';

const docs = readFileSync(new URL('../../docs/HANDLERS.md', import.meta.url), 'utf8');
const match = /<!-- example: ram-disk-handler -->\n```js\n([\s\S]*?)\n```/.exec(docs);
const dir = mkdtempSync(join(tmpdir(), 'tcmu-docs-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('docs/HANDLERS.md RAM disk example', () => {
  it('is present and about 40 lines', () => {
    expect(match).not.toBeNull();
    const lines = match![1]!.split('\n').length;
    expect(lines).toBeGreaterThan(25);
    expect(lines).toBeLessThanOrEqual(45);
  });

  it('loads as a user handler and serves reads, writes, discard and emulated WRITE SAME', async () => {
    const path = join(dir, 'my-ramdisk.mjs');
    writeFileSync(path, match![1]!);
    registerUserHandler('myram', path);
    const lun = await openDevConfig('myram/', { size: 64 * 1024, blockSize: 512, readOnly: false, log: silentLog });
    expect(lun.size).toBe(64 * 1024);
    expect(lun.readOnly).toBe(false);
    expect(lun.thin).toBe(true);
    expect(lun.writeCache).toBe(false);

    const a = Buffer.alloc(512, 0x11);
    const b = Buffer.alloc(1024, 0x22);
    expect(lun.write(4096, [a, b], { fua: true })).toBeUndefined();
    const out1 = Buffer.alloc(1024);
    const out2 = Buffer.alloc(512);
    lun.read(4096, [out1, out2]);
    expect(out1.subarray(0, 512).every((x) => x === 0x11)).toBe(true);
    expect(out1.subarray(512).every((x) => x === 0x22)).toBe(true);
    expect(out2.every((x) => x === 0x22)).toBe(true);

    lun.discard(4096, 512);
    lun.writeZeroes(4608, 512, { unmap: false });
    lun.read(4096, [out1]);
    expect(out1.every((x) => x === 0)).toBe(true);
    lun.read(5120, [out2]);
    expect(out2.every((x) => x === 0x22)).toBe(true);
    await lun.close();
  });

  it('refuses a size it cannot use, with its own message', async () => {
    await expect(openDevConfig('myram/;size=1000', { size: undefined, blockSize: 512, readOnly: false, log: silentLog })).rejects.toThrow(
      'myram: size must be a positive multiple of 512, got 1000',
    );
  });
});
