// `tcmu-ts lun create --export iscsi` / `lun export --fabric iscsi`: the same
// rules as the config file, checked before anything is made in the kernel.
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { iscsiExportOptions } from '../../src/cli/lun.js';

const keyDir = () => {
  const dir = mkdtempSync(join(tmpdir(), 'tcmu-cli-keys-'));
  chmodSync(dir, 0o700);
  writeFileSync(join(dir, 'web'), 'web1:very-secret-0123\n', { mode: 0o600 });
  return dir;
};

describe('iscsiExportOptions', () => {
  it('requires --initiator, saying how to get the old behaviour', () => {
    expect(() => iscsiExportOptions({ portal: '127.0.0.1:3260', keyDir: '/x' })).toThrow(
      '--initiator is required for iSCSI: give the initiator IQNs allowed to log in (repeatable), or --initiator any to admit every host',
    );
  });

  it('requires --portal (no default address)', () => {
    expect(() => iscsiExportOptions({ initiator: ['any'], keyDir: '/x' })).toThrow(/^--portal is required for iSCSI/);
  });

  it('takes "any" only on its own', () => {
    expect(iscsiExportOptions({ initiator: ['any'], portal: '0.0.0.0:3260', keyDir: '/x' })).toMatchObject({ initiators: 'any', portal: '0.0.0.0:3260' });
    expect(() => iscsiExportOptions({ initiator: ['any', 'iqn.2020-01.a:b'], portal: '0.0.0.0:3260', keyDir: '/x' })).toThrow(/cannot be combined/);
  });

  it('reads the CHAP key from the key directory', () => {
    const opts = iscsiExportOptions({ initiator: ['iqn.2020-01.a:b'], portal: '127.0.0.1:3260', chap: 'web', keyDir: keyDir() });
    expect(opts).toMatchObject({ initiators: ['iqn.2020-01.a:b'], chap: { userid: 'web1', password: 'very-secret-0123' } });
  });

  it('refuses a key file others can read, without the secret in the message', () => {
    const dir = keyDir();
    chmodSync(join(dir, 'web'), 0o644);
    let message = '';
    try {
      iscsiExportOptions({ initiator: ['any'], portal: '127.0.0.1:3260', chap: 'web', keyDir: dir });
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/is open to group or others \(mode 0644\)/);
    expect(message).not.toContain('very-secret');
  });
});
