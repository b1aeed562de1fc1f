import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/backstore/config-error.js';
import { parseDevConfig } from '../../src/backstore/dev-config.js';
import { parseConfig } from '../../src/config/config.js';

const lun = (body: string) => parseConfig(`[lun.a]\nsize = "1G"\n${body}\n`, 'c.toml').luns[0]!;

describe('LUN backstores in the config file', () => {
  it('a plain handler with path and options becomes one dev_config layer', () => {
    const l = lun('backstore = "file"\npath = "/srv/a.img"\noptions = { create = 1, extend = true }');
    expect(l.devConfig).toBe('file//srv/a.img;create=1;extend=true');
    expect(l.layers).toEqual([{ handler: 'file', config: '/srv/a.img', options: { create: '1', extend: 'true' } }]);
    expect(lun('backstore = "ram"').devConfig).toBe('ram/');
  });

  it('a stack string, top first, is the dev_config itself', () => {
    const l = lun('backstore = "crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd"');
    expect(l.devConfig).toBe('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd');
    expect(l.layers.map((x) => x.handler)).toEqual(['crypt', 'qcow2']);
    expect(l.layers).toEqual(parseDevConfig(l.devConfig).layers);
    expect(lun('backstore = "example-passthrough/>ram/;size=1G"').layers).toHaveLength(2);
  });

  it.each([
    ['backstore = "crypt/;key=k1>file//srv/a.img"\npath = "/srv/a.img"', /^c\.toml: lun\.a\.path: not allowed when backstore is a stack string/],
    ['backstore = "crypt/;key=k1>file//srv/a.img"\noptions = { key = "k2" }', /^c\.toml: lun\.a\.options: not allowed when backstore is a stack string/],
    ['backstore = "crypt/;key>file//srv/a.img"', /^c\.toml: lun\.a\.backstore: dev_config ".*": layer 1 of 2 \(top\), handler "crypt": option "key" has no '='/],
    ['backstore = "crypt/;key=k1>file//srv/a>b.img"', /^c\.toml: lun\.a\.backstore: .*layer 3 of 3 \(bottom\) "b\.img" has no '\/'.*'>' separates stack layers/],
    ['backstore = "crypt/;key=k1>file/srv/a.img"', /^c\.toml: lun\.a\.backstore: the bottom layer \(file\) needs an absolute path/],
    ['backstore = "crypt/;key=k1,x=1>file//a"', /^c\.toml: lun\.a\.backstore: .*contains ','/],
    ['backstore = "File"\npath = "/srv/a.img"', /^c\.toml: lun\.a\.backstore: .*handler name is invalid/],
    ['backstore = "file"\npath = "/srv/a>b.img"', /^c\.toml: lun\.a\.path: .*config "\/srv\/a>b\.img" contains '>'/],
    ['backstore = "file"\npath = "/srv/a.img"\noptions = { Create = 1 }', /^c\.toml: lun\.a\.options\.Create: .*option key "Create" is invalid/],
    ['backstore = "file"\npath = "/srv/a.img"\noptions = { create = "1;extend=1" }', /^c\.toml: lun\.a\.options\.create: .*contains ';'/],
    [`backstore = "file"\npath = "/${'x'.repeat(260)}"`, /^c\.toml: lun\.a\.path: .*the kernel allows at most 255/],
  ])('refuses %j naming the key and the layer', (body, message) => {
    let caught: unknown;
    try {
      lun(body);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(message);
  });
});
