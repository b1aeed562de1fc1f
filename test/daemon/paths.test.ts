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
});
