import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/backstore/config-error.js';
import { parseDevConfig } from '../../src/backstore/dev-config.js';
import { devConfigFromCli } from '../../src/cli/lun.js';

describe('tcmu-ts lun create: the dev_config from --backstore, --path, --option, --encrypt, --key', () => {
  it('a handler with --path and --option', () => {
    expect(devConfigFromCli({ backstore: 'file', path: '/srv/a.img', option: ['create=1', 'extend=1'] })).toBe('file//srv/a.img;create=1;extend=1');
    expect(devConfigFromCli({ backstore: 'ram', path: '' })).toBe('ram/');
  });

  it('a stack string is taken as written (checked by the dev_config parser)', () => {
    expect(devConfigFromCli({ backstore: 'crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd', path: '' })).toBe('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd');
  });

  it('--encrypt --key puts crypt/;key=NAME on top of a handler or of a stack', () => {
    expect(devConfigFromCli({ backstore: 'file', path: '/srv/a.img', encrypt: 'luks2', key: 'k1' })).toBe('crypt/;key=k1>file//srv/a.img');
    expect(devConfigFromCli({ backstore: 'qcow2', path: '/srv/a.qcow2', option: ['compress=zstd'], encrypt: 'luks1', key: 'db.key' })).toBe(
      'crypt/;key=db.key>qcow2//srv/a.qcow2;compress=zstd',
    );
    const stacked = devConfigFromCli({ backstore: 'example-passthrough/>file//srv/a.img', encrypt: 'luks2', key: 'k1' });
    expect(parseDevConfig(stacked).layers.map((l) => l.handler)).toEqual(['crypt', 'example-passthrough', 'file']);
  });

  it.each([
    [{ backstore: 'crypt/;key=k1>file//srv/a.img', path: '/srv/b.img' }, /--path cannot be combined with a stack/],
    [{ backstore: 'crypt/;key=k1>file//srv/a.img', option: ['x=1'] }, /--option cannot be combined with a stack/],
    [{ backstore: 'file', path: '/srv/a.img', key: 'k1' }, /--key needs --encrypt luks2 or --encrypt luks1/],
    [{ backstore: 'file', path: '/srv/a.img', encrypt: 'luks2' }, /--encrypt needs --key NAME/],
    [{ backstore: 'file', path: '/srv/a.img', encrypt: 'aes', key: 'k1' }, /--encrypt "aes": expected luks2 or luks1/],
    [{ backstore: 'file', path: '/srv/a.img', encrypt: 'luks2', key: '../k1' }, /--key: key name "\.\.\/k1" is invalid/],
    [{ backstore: 'file', path: '/srv/a>b.img' }, /handler "file": config "\/srv\/a>b\.img" contains '>'/],
    [{ backstore: 'file', path: '/srv/a.img', option: ['create'] }, /--option "create": expected key=value/],
    [{ backstore: 'crypt/;key>file//srv/a.img' }, /layer 1 of 2 \(top\), handler "crypt": option "key" has no '='/],
    [{ backstore: 'file', path: `/${'x'.repeat(240)}`, encrypt: 'luks2', key: 'k1' }, /the kernel allows at most 255/],
  ])('refuses %j with a ConfigError naming the flag or the layer', (o, message) => {
    let caught: unknown;
    try {
      devConfigFromCli(o);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(message);
  });
});
