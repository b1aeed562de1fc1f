import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { listTcmuDevices, parseUioName } from '../../src/tcmu/discovery.js';

describe('uio discovery', () => {
  it('parses TCMU uio names, keeping slashes inside dev_config', () => {
    expect(parseUioName('tcm-user/1/lun0/file//var/lib/x.img\n')).toEqual({
      hbaIndex: 1,
      deviceName: 'lun0',
      devConfig: 'file//var/lib/x.img',
      subtype: 'file',
    });
    expect(parseUioName('tcm-user/3/r/ram/')).toMatchObject({ subtype: 'ram', devConfig: 'ram/' });
    expect(parseUioName('uio_pci_generic')).toBeUndefined();
  });

  it('lists only TCMU devices with their map size, in uio order', () => {
    const root = mkdtempSync(join(tmpdir(), 'tcmu-uio-'));
    const add = (uio: string, name: string, size: string) => {
      mkdirSync(join(root, uio, 'maps', 'map0'), { recursive: true });
      writeFileSync(join(root, uio, 'name'), `${name}\n`);
      writeFileSync(join(root, uio, 'maps', 'map0', 'size'), `${size}\n`);
    };
    add('uio10', 'tcm-user/1/b/ram/', '0x0000000040800000');
    add('uio2', 'tcm-user/1/a/file//x', '0x1000');
    add('uio3', 'some-other-driver', '0x1000');
    const devices = listTcmuDevices(root);
    expect(devices.map((d) => [d.uio, d.deviceName, d.mapSize])).toEqual([
      ['uio2', 'a', 0x1000],
      ['uio10', 'b', 0x40800000],
    ]);
  });
});
