import { describe, expect, it } from 'vitest';
import { parseDevConfig } from '../../src/backstore/dev-config.js';
import { pathOfDevConfig } from '../../src/daemon/paths.js';

describe('pathOfDevConfig', () => {
  it('extracts the path of path-based dev_configs', () => {
    expect(pathOfDevConfig('file//var/lib/a.img')).toBe('/var/lib/a.img');
    expect(pathOfDevConfig('qcow2//var/lib/a.qcow2;ro=1')).toBe('/var/lib/a.qcow2');
    expect(pathOfDevConfig('ram/')).toBeUndefined();
    expect(pathOfDevConfig('no-slash')).toBeUndefined();
  });

  it('is exactly the config the handler receives (one parser: "?" is part of the path)', () => {
    for (const dc of ['file//srv/a?b.img', 'qcow2//srv/x?/../y.qcow2;create=1', 'file//srv/plain.img']) {
      expect(pathOfDevConfig(dc)).toBe(parseDevConfig(dc).config);
    }
  });

  it('finds the layer of a handler inside a stack (snapshots reach qcow2 under crypt)', () => {
    expect(pathOfDevConfig('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd', 'qcow2')).toBe('/srv/a.qcow2');
    expect(pathOfDevConfig('crypt/;key=k1>qcow2//srv/a.qcow2')).toBeUndefined(); // the top layer (crypt) names no path
    expect(pathOfDevConfig('crypt/;key=k1>file//srv/a.img', 'qcow2')).toBeUndefined();
    expect(pathOfDevConfig('qcow2//srv/b.qcow2', 'qcow2')).toBe('/srv/b.qcow2');
    expect(pathOfDevConfig('crypt/>>qcow2//srv/a.qcow2', 'qcow2')).toBeUndefined(); // unparsable: no path at all
  });
});
