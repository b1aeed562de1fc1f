import { describe, expect, it } from 'vitest';
import { formatDevConfig, parseDevConfig } from '../../src/backstore/dev-config.js';

describe('parseDevConfig', () => {
  it('splits tcmu-runner style subtype/config', () => {
    expect(parseDevConfig('file//var/lib/lun.img')).toEqual({ handler: 'file', config: '/var/lib/lun.img', options: {} });
    expect(parseDevConfig('ram/')).toEqual({ handler: 'ram', config: '', options: {} });
    expect(parseDevConfig('qcow2//images/a b.qcow2')).toEqual({ handler: 'qcow2', config: '/images/a b.qcow2', options: {} });
  });

  it('parses ;key=value options after the config', () => {
    expect(parseDevConfig('file//var/lib/lun.img;extend=1;create=1')).toEqual({
      handler: 'file',
      config: '/var/lib/lun.img',
      options: { extend: '1', create: '1' },
    });
    expect(parseDevConfig('ram/;size=1G').options).toEqual({ size: '1G' });
    expect(parseDevConfig('x/;key=a=b;empty=').options).toEqual({ key: 'a=b', empty: '' });
  });

  it('gives options a null prototype, so "constructor" is just a key', () => {
    const { options } = parseDevConfig('ram/;size=1M');
    expect(options.constructor).toBeUndefined();
    expect(parseDevConfig('ram/;constructor=1').options.constructor).toBe('1');
  });

  it.each([
    ['file', /has no '\/'/],
    ['/var/lib/x', /handler name "" is invalid/],
    ['File//x', /handler name "File" is invalid/],
    ['file//a,b', /contains ','/],
    ['file//x;create', /option "create" has no '='/],
    ['file//x;=1', /option key "" is invalid/],
    ['file//x;Create=1', /option key "Create" is invalid/],
    ['file//x;create=1;create=0', /option "create" is given twice/],
    [`file//${'a'.repeat(250)}`, /256 characters; the kernel allows at most 255/],
  ])('rejects %j', (input, message) => {
    expect(() => parseDevConfig(input)).toThrow(message);
  });

  it('errors quote the whole dev_config', () => {
    expect(() => parseDevConfig('file//x;bad')).toThrow('file//x;bad: option "bad" has no \'=\'');
  });
});

describe('formatDevConfig', () => {
  it('is the inverse of parseDevConfig', () => {
    const text = formatDevConfig('file', '/var/lib/lun.img', { create: '1', extend: 'true' });
    expect(text).toBe('file//var/lib/lun.img;create=1;extend=true');
    expect(parseDevConfig(text)).toEqual({ handler: 'file', config: '/var/lib/lun.img', options: { create: '1', extend: 'true' } });
    expect(formatDevConfig('ram', '')).toBe('ram/');
  });

  it('refuses what could not be parsed back', () => {
    expect(() => formatDevConfig('file', '/a;b')).toThrow(/config "\/a;b" contains ';' or ','/);
    expect(() => formatDevConfig('file', '/a', { k: 'x,y' })).toThrow(/option k="x,y"/);
    expect(() => formatDevConfig('file', '/a', { 'Bad Key': '1' })).toThrow(/option key "Bad Key" is invalid/);
    expect(() => formatDevConfig('Nope', '/a')).toThrow(/handler name is invalid/);
    expect(() => formatDevConfig('file', `/${'x'.repeat(260)}`)).toThrow(/allows at most 255/);
  });
});
