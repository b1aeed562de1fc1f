import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';
import { parseSize } from '../../src/config/size.js';

describe('parseSize', () => {
  it.each([
    ['512', 512],
    ['4k', 4096],
    ['10G', 10 * 2 ** 30],
    ['1.5T', 1.5 * 2 ** 40],
    ['64MiB', 64 * 2 ** 20],
    [1048576, 1048576],
  ])('%s -> %d', (text, bytes) => {
    expect(parseSize(text as string | number, 'size')).toBe(bytes);
  });
  it.each(['', '-1', '10X', '0', '1.2345k'])('rejects %j', (text) => {
    expect(() => parseSize(text, 'lun.a.size')).toThrow(/lun\.a\.size/);
  });
});

describe('parseConfig', () => {
  it('parses a full config', () => {
    const c = parseConfig(`
[daemon]
log_level = "debug"
allowed_dirs = ["/var/lib/tcmu-ts"]
handlers = { mine = "/etc/tcmu-ts/mine.js" }

[lun.db1]
backstore = "file"
path = "/var/lib/tcmu-ts/db1.img"
size = "1G"
options = { extend = 1 }
export = "loop"
completion_affinity = "submitter"

[lun.scratch]
backstore = "ram"
size = 67108864
block_size = 4096
export = "iscsi"
initiators = ["iqn.1993-08.org.debian:01:abc"]
`);
    expect(c.logLevel).toBe('debug');
    expect(c.allowedDirs).toEqual(['/var/lib/tcmu-ts']);
    expect(c.handlers).toEqual({ mine: '/etc/tcmu-ts/mine.js' });
    expect(c.luns).toHaveLength(2);
    expect(c.luns[0]).toMatchObject({ name: 'db1', backstore: 'file', size: 2 ** 30, options: { extend: '1' }, export: 'loop', completionAffinity: 'submitter' });
    expect(c.luns[1].completionAffinity).toBeUndefined();
    expect(c.luns[1]).toMatchObject({ name: 'scratch', blockSize: 4096, export: 'iscsi', initiators: ['iqn.1993-08.org.debian:01:abc'] });
  });

  it.each([
    ['[daemon]\nlog_levl = "info"', /daemon\.log_levl: unknown key/],
    ['[daemon]\nlog_level = "loud"', /daemon\.log_level: "loud" is not one of/],
    ['[daemon]\nallowed_dirs = ["relative/dir"]', /daemon\.allowed_dirs\[0\]: "relative\/dir" is not an absolute path/],
    ['[lun.a]\nbackstore = "file"\nsize = "1G"', /lun\.a\.path: missing/],
    ['[lun.a]\nbackstore = "file"\npath = "x.img"\nsize = "1G"', /lun\.a\.path: "x\.img" is not an absolute path/],
    ['[lun.a]\nbackstore = "file"\npath = "/x.img"', /lun\.a\.size: missing/],
    ['[lun.a]\nbackstore = "file"\npath = "/x.img"\nsize = "lots"', /lun\.a\.size: "lots" is not a size/],
    ['[lun.a]\nbackstore = "ram"\nsize = 1000\nblock_size = 512', /lun\.a\.size: 1000 is not a multiple of block_size 512/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\nblock_size = 1024', /lun\.a\.block_size: must be 512 or 4096/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\nexport = "fc"', /lun\.a\.export: "fc" is not one of/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\niqn = "iqn.x"', /lun\.a\.iqn: only valid with export = "iscsi"/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\nexport = "loop"\ncompletion_affinity = "cpu0"', /lun\.a\.completion_affinity: "cpu0" is not one of current, submitter/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\ncompletion_affinity = "current"', /lun\.a\.completion_affinity: only valid with export = "loop" or "iscsi"/],
    ['[lun."bad name"]\nbackstore = "ram"\nsize = "1M"', /lun\.bad name: LUN name "bad name" is invalid/],
    ['[lun.a]\nsize = "1M"', /lun\.a\.backstore: missing/],
    ['[lun.a\nsize = 1', /^config:\d+:\d+: /],
  ])('reports %j clearly', (text, message) => {
    expect(() => parseConfig(text)).toThrow(message);
  });
});
