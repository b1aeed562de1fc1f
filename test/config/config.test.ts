import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/config.js';

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
portal = "192.0.2.10:3260"
initiators = ["iqn.1993-08.org.debian:01:abc"]
chap = "scratch-chap"
`);
    expect(c.logLevel).toBe('debug');
    expect(c.allowedDirs).toEqual(['/var/lib/tcmu-ts']);
    expect(c.handlers).toEqual({ mine: '/etc/tcmu-ts/mine.js' });
    expect(c.luns).toHaveLength(2);
    expect(c.luns[0]).toMatchObject({ name: 'db1', backstore: 'file', size: 2 ** 30, options: { extend: '1' }, export: 'loop', completionAffinity: 'submitter' });
    expect(c.luns[1].completionAffinity).toBeUndefined();
    expect(c.luns[1]).toMatchObject({ name: 'scratch', blockSize: 4096, export: 'iscsi', initiators: ['iqn.1993-08.org.debian:01:abc'], portal: '192.0.2.10:3260', chap: 'scratch-chap' });
    expect(c.keyDir).toBe('/etc/tcmu-ts/keys');
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
    ['[lun."bad name"]\nbackstore = "ram"\nsize = "1M"', /lun\."bad name": LUN name "bad name" is invalid/],
    ['[lun.a]\nsize = "1M"', /lun\.a\.backstore: missing/],
    ['[lun.a\nsize = 1', /^config:\d+:\d+: /],
  ])('reports %j clearly', (text, message) => {
    expect(() => parseConfig(text)).toThrow(message);
  });

  const RAM = '[lun.a]\nbackstore = "ram"\nsize = "1M"\n';
  const ISCSI = `${RAM}export = "iscsi"\n`;
  it.each([
    // LUN names that would be configfs path components
    ['[lun."."]\nbackstore = "ram"\nsize = "1M"', /lun\."\.": LUN name "\." is invalid/],
    ['[lun.".."]\nbackstore = "ram"\nsize = "1M"', /lun\."\.\.": LUN name "\.\." is invalid/],
    ['[lun."a/b"]\nbackstore = "ram"\nsize = "1M"', /LUN name "a\/b" is invalid/],
    ['[lun.-rf]\nbackstore = "ram"\nsize = "1M"', /LUN name "-rf" is invalid/],
    [`[lun.${'x'.repeat(65)}]\nbackstore = "ram"\nsize = "1M"`, /LUN name "x+" is invalid/],
    // the control socket is the single-instance guard
    ['[daemon]\ncontrol_socket = ""', /daemon\.control_socket: cannot be empty: the control socket is also what keeps a second daemon/],
    ['[daemon]\ncontrol_socket = "ctl.sock"', /daemon\.control_socket: "ctl\.sock" is not an absolute path/],
    ['[daemon]\nkey_dir = "keys"', /daemon\.key_dir: "keys" is not an absolute path/],
    // iSCSI: nothing opens by default; old configs are told what to add
    [`${ISCSI}portal = "0.0.0.0:3260"`, /lun\.a\.initiators: missing: .*initiators = "any" for the old behaviour/],
    [`${ISCSI}initiators = "any"`, /lun\.a\.portal: missing: .*"0\.0\.0\.0:3260" for every address, the old default/],
    [`${ISCSI}portal = "0.0.0.0:3260"\ninitiators = []`, /lun\.a\.initiators: an empty list lets no initiator log in/],
    [`${ISCSI}portal = "0.0.0.0:3260"\ninitiators = "all"`, /lun\.a\.initiators: "all": expected a list of initiator IQNs or the string "any"/],
    [`${ISCSI}portal = "0.0.0.0:3260"\ninitiators = ["../../x"]`, /lun\.a\.initiators\[0\]: initiator "\.\.\/\.\.\/x" is not an iSCSI name/],
    [`${ISCSI}portal = "0.0.0.0:3260"\ninitiators = ["iqn.2020-01.a:b", "iqn.2020-01.a:b"]`, /lun\.a\.initiators: "iqn\.2020-01\.a:b" is listed twice/],
    [`${ISCSI}portal = "localhost"\ninitiators = "any"`, /lun\.a\.portal: portal "localhost" is not a portal/],
    [`${ISCSI}portal = "300.1.1.1:3260"\ninitiators = "any"`, /lun\.a\.portal: portal "300\.1\.1\.1:3260" is not a portal/],
    [`${ISCSI}portal = "1.2.3.4:0"\ninitiators = "any"`, /lun\.a\.portal: .* is not a portal/],
    [`${ISCSI}portal = "1.2.3.4:3260"\ninitiators = "any"\niqn = "iqn/../x"`, /lun\.a\.iqn: target name "iqn\/\.\.\/x" is not an iSCSI name/],
    [`${ISCSI}portal = "1.2.3.4:3260"\ninitiators = "any"\nchap = "../etc/shadow"`, /lun\.a\.chap: CHAP key name "\.\.\/etc\/shadow" is invalid/],
    [`${RAM}export = "loop"\nchap = "k"`, /lun\.a\.chap: only valid with export = "iscsi"/],
    [`${RAM}export = "loop"\nportal = "1.2.3.4:3260"`, /lun\.a\.portal: only valid with export = "iscsi"/],
    // values of the wrong type are described, not dumped
    ['[lun.a]\nbackstore = "ram"\nsize = nan', /lun\.a\.size: expected a positive integer byte count, got the number nan/],
    ['[lun.a]\nbackstore = "ram"\nsize = 1979-05-27', /lun\.a\.size: expected a size like "10G" or a byte count, got a date/],
    ['[lun.a]\nbackstore = "ram"\nsize = "1M"\noptions = { x = inf }', /lun\.a\.options\.x: expected a finite number, got the number infinity/],
    ['[lun.a]\nbackstore = 1\nsize = "1M"', /lun\.a\.backstore: expected a string, got the number 1/],
  ])('refuses %j naming the key', (text, message) => {
    let err: unknown;
    try {
      parseConfig(text);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('ECONFIG');
    expect((err as Error).message).toMatch(message);
  });

  it('accepts the explicit forms of an iSCSI export', () => {
    const any = parseConfig(`${ISCSI}portal = "0.0.0.0:3260"\ninitiators = "any"`);
    expect(any.luns[0]).toMatchObject({ export: 'iscsi', initiators: 'any', portal: '0.0.0.0:3260', chap: undefined });
    const v6 = parseConfig(`${ISCSI}portal = "[::1]:3260"\ninitiators = ["iqn.2020-01.org.example:host1", "eui.0123456789abcdef"]\nchap = "k1"`);
    expect(v6.luns[0]).toMatchObject({ portal: '[::1]:3260', initiators: ['iqn.2020-01.org.example:host1', 'eui.0123456789abcdef'], chap: 'k1' });
    expect(parseConfig('[daemon]\nkey_dir = "/srv/keys"').keyDir).toBe('/srv/keys');
  });

  it('gives TOML syntax errors a line:column and the ECONFIG code', () => {
    expect(() => parseConfig('[lun.a\nsize = 1', 'tcmu.toml')).toThrow(expect.objectContaining({ code: 'ECONFIG', message: expect.stringMatching(/^tcmu\.toml:1:\d+: TOML syntax: /) }));
  });

  it('names an unreadable file with its errno, as ECONFIG', () => {
    expect(() => loadConfig('/nonexistent/tcmu.toml')).toThrow(expect.objectContaining({ code: 'ECONFIG', message: '/nonexistent/tcmu.toml: (file): cannot be read (ENOENT)' }));
  });
});
