// The crypt handler's control operations: `image create --format crypt`
// makes a container cryptsetup opens with the key file, `image info` shows
// its header without a key, and the probe recognises LUKS images.
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { cryptControl } from '../../../handlers/crypt/control.js';
import { createFileOpener } from '../../../src/backstore/confine.js';
import type { ControlContext } from '../../../src/backstore/types.js';
import { haveTool, run, tryRun, workDir } from './tools.js';

const w = workDir();
const keyFile = w.writeKey('k', Buffer.from('control test key\n'));
const files = createFileOpener([]);
const ctx = (config: string): ControlContext => ({ mode: 'offline', config, options: {}, files, log: pino({ level: 'silent' }) });
const op = (name: string) => cryptControl.operations[name]!;

describe('crypt image operations', () => {
  it('image create (LUKS2, 4096-byte sectors, pbkdf2) then image info; cryptsetup accepts the key file', async () => {
    const img = join(w.dir, 'a.img');
    const res = await op('image.create').run(ctx(img), { size: 8 << 20, encrypt: 'luks2', 'key-file': keyFile, 'sector-size': '4096', kdf: 'pbkdf2' });
    expect(res.value).toMatchObject({ created: img, dataOffset: 16 << 20, fileSize: 24 << 20 });
    const info = (await op('image.info').run(ctx(img), {})).value as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'luks2', cipher: 'aes-xts-plain64', keyBits: 512, sectorSize: 4096, dataOffset: 16 << 20 });
    expect((info.keyslots as Array<{ kdf: string }>)[0]!.kdf).toMatch(/^pbkdf2-sha256/);
    expect(await cryptControl.probe!(img, files)).toBe(true);
    if (haveTool('cryptsetup')) expect(tryRun('cryptsetup', ['open', '--test-passphrase', '--key-file', keyFile, img]).status).toBe(0);
  });

  it('image create LUKS1; refuses an existing file and a key file others can read', async () => {
    const img = join(w.dir, 'b.img');
    await op('image.create').run(ctx(img), { size: 4 << 20, encrypt: 'luks1', 'key-file': keyFile, 'sector-size': '512', kdf: 'argon2id' });
    expect(((await op('image.info').run(ctx(img), {})).value as { format: string }).format).toBe('luks1');
    await expect(op('image.create').run(ctx(img), { size: 4 << 20, encrypt: 'luks1', 'key-file': keyFile, 'sector-size': '512', kdf: 'pbkdf2' })).rejects.toMatchObject({ code: 'EEXIST' });
    const open = join(w.dir, 'open-key');
    writeFileSync(open, 'x');
    chmodSync(open, 0o644);
    await expect(op('image.create').run(ctx(join(w.dir, 'c.img')), { size: 4 << 20, encrypt: 'luks2', 'key-file': open, 'sector-size': '512', kdf: 'pbkdf2' })).rejects.toThrow(/is open to group or others \(mode 0644\)/);
  });

  it('the probe does not claim a non-LUKS file', async () => {
    const raw = join(w.dir, 'raw.img');
    writeFileSync(raw, Buffer.alloc(4096));
    expect(await cryptControl.probe!(raw, files)).toBe(false);
  });
});

afterAll(() => {
  run('rm', ['-rf', w.dir]);
});
