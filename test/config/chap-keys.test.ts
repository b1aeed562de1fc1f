// CHAP key files: format, the private-permissions rule, and that no error
// ever carries the secret.
import { chmodSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeEach, describe, expect, it } from 'vitest';
import { checkKeyDir, parseChapKeyFile, readChapKey } from '../../src/config/chap-keys.js';

const SECRET = 'very-secret-0123';
const MUTUAL = 'other-secret-4567';

function errorOf(fn: () => unknown): Error & { code?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected a refusal');
}

describe('parseChapKeyFile', () => {
  it('reads user:secret, an optional mutual line, and skips comments and blank lines', () => {
    expect(parseChapKeyFile(`web1:${SECRET}\n`, 'k')).toEqual({ userid: 'web1', password: SECRET });
    expect(parseChapKeyFile(`# web1\n\nweb1:${SECRET}\r\ntarget:${MUTUAL}\n`, 'k')).toEqual({
      userid: 'web1',
      password: SECRET,
      mutual: { userid: 'target', password: MUTUAL },
    });
    expect(parseChapKeyFile(`web1:${SECRET}:with:colons`, 'k').password).toBe(`${SECRET}:with:colons`);
  });

  it.each([
    ['', /k: empty; expected a line user:secret/],
    ['web1', /k:1: expected user:secret/],
    [':' + SECRET, /k:1: expected user:secret/],
    ['web 1:' + SECRET, /k:1: expected user:secret/],
    ['web1:short', /k:1: the secret must be 12-255 printable characters/],
    [`web1:${SECRET} x`, /k:1: the secret must be 12-255/],
    [`web1:${'s'.repeat(256)}`, /k:1: the secret must be 12-255/],
    [`web1:${SECRET}\nt:${SECRET}`, /k:2: the mutual \(target\) secret must differ/],
    [`a:${SECRET}\nb:${MUTUAL}\nc:${SECRET}x`, /k:3: at most two lines/],
  ])('refuses %j without echoing the content', (text, message) => {
    const err = errorOf(() => parseChapKeyFile(text, 'k'));
    expect(err.message).toMatch(message);
    expect(err.code).toBe('EINVAL');
    expect(err.message).not.toContain('secret-');
    expect(err.message).not.toContain('short');
  });
});

describe('readChapKey', () => {
  let dir: string;
  beforeEach(() => {
    dir = join(mkdtempSync(join(tmpdir(), 'tcmu-keys-')), 'keys');
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700);
  });
  const put = (name: string, text: string, mode = 0o600) => {
    writeFileSync(join(dir, name), text);
    chmodSync(join(dir, name), mode);
  };

  it('reads a private key file', () => {
    put('web1', `web1:${SECRET}\n`);
    expect(readChapKey(dir, 'web1')).toEqual({ userid: 'web1', password: SECRET });
  });

  it('refuses a file open to group or others, and says how to fix it', () => {
    put('web1', `web1:${SECRET}\n`, 0o640);
    const err = errorOf(() => readChapKey(dir, 'web1'));
    expect(err).toMatchObject({ code: 'EACCES' });
    expect(err.message).toBe(`CHAP key file ${join(dir, 'web1')} is open to group or others (mode 0640): chmod go= ${join(dir, 'web1')}`);
  });

  it('refuses a key directory open to group or others', () => {
    put('web1', `web1:${SECRET}\n`);
    chmodSync(dir, 0o755);
    expect(() => readChapKey(dir, 'web1')).toThrow(expect.objectContaining({ code: 'EACCES', message: expect.stringMatching(/key directory .* \(mode 0755\)/) }));
    expect(() => checkKeyDir(dir)).toThrow(/mode 0755/);
  });

  it('refuses symlinks, missing files, non-files, relative dirs and names that leave the directory', () => {
    put('real', `web1:${SECRET}\n`);
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    expect(() => readChapKey(dir, 'link')).toThrow(expect.objectContaining({ code: 'ELOOP', message: expect.stringMatching(/is a symlink/) }));
    expect(() => readChapKey(dir, 'none')).toThrow(expect.objectContaining({ code: 'ENOENT', message: `CHAP key file ${join(dir, 'none')} does not exist` }));
    mkdirSync(join(dir, 'sub'), { mode: 0o700 });
    expect(() => readChapKey(dir, 'sub')).toThrow(/is not a regular file/);
    expect(() => readChapKey('keys', 'real')).toThrow(/not an absolute path/);
    expect(() => readChapKey(dir, '../keys/real')).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });

  it('bounds the read of an oversized file', () => {
    put('big', `web1:${SECRET}\n${'#'.repeat(5000)}\n`);
    expect(() => readChapKey(dir, 'big')).toThrow(expect.objectContaining({ code: 'EFBIG' }));
  });

  it('never puts the secret into an error', () => {
    put('bad', `web1:${SECRET}\nweb1:${SECRET}\n`);
    const err = errorOf(() => readChapKey(dir, 'bad'));
    expect(err.message).not.toContain(SECRET);
    expect(JSON.stringify(err)).not.toContain(SECRET);
  });
});
