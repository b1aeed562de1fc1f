/** `tcmu-ts log-level LUN LEVEL`: one LUN's logger, and every child of it (engine, disk, handler), changes level. */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { setLunLogLevel } from '../../src/daemon/lun-log-level.js';

describe('per-LUN log level', () => {
  it('turns debug on for one LUN and its handler logger, not for the daemon or other LUNs', () => {
    const lines: { msg: string; lun?: string; handler?: string }[] = [];
    const root = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
    const a = { id: 'user_1/a', log: root.child({ lun: 'user_1/a' }) };
    const b = { id: 'user_1/b', log: root.child({ lun: 'user_1/b' }) };
    const handlerOfA = a.log.child({ handler: 'file' }); // created before the change, as a served LUN's is
    expect(setLunLogLevel(a, 'debug')).toEqual({ lun: 'user_1/a', level: 'debug', was: 'info' });
    handlerOfA.debug('handler detail');
    a.log.debug('lun detail');
    b.log.debug('other lun detail');
    root.debug('daemon detail');
    expect(lines.map((l) => l.msg)).toEqual(['log level changed', 'handler detail', 'lun detail']);
  });

  it('refuses an unknown level with EINVAL and changes nothing', () => {
    const lun = { id: 'user_1/a', log: pino({ level: 'info' }) };
    expect(() => setLunLogLevel(lun, 'loud')).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringContaining('"loud" is not one of fatal, error') }));
    expect(() => setLunLogLevel(lun, { toString: () => 'debug' })).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(lun.log.level).toBe('info');
  });
});
