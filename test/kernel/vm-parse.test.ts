// The console protocol between the guest and vm.ts, without booting anything.
import { describe, expect, it } from 'vitest';
import { parseConsole, slowestSteps } from './vm.js';

describe('parseConsole', () => {
  const text = [
    'SeaBIOS (version 1.16.2)',
    '@@VM phase=ready uptime=4.6',
    '@@RESULT inq_vendor=LIO-ORG ',
    '@@RESULT step=ok',
    '@@RESULT step=fail with spaces',
    '[    5.1] sd 0:0:1:0: [sda] Attached SCSI disk',
    '@@LOG runner {"level":50,"msg":"boom"}',
    '@@LOG runner ',
    '@@EXIT 3',
    '@@VM status=fail exit=3 boot_s=4.6 total_s=9.1 log=-',
    '',
  ].join('\n');
  const p = parseConsole(text);

  it('collects results by key, keeping repeats in order and trimming pad blanks', () => {
    expect(p.results.get('inq_vendor')).toEqual(['LIO-ORG']);
    expect(p.results.get('step')).toEqual(['ok', 'fail with spaces']);
  });

  it('separates log dumps from the console tail', () => {
    expect(p.logs.get('runner')).toEqual(['{"level":50,"msg":"boom"}', '']);
    expect(p.consoleTail).not.toContain('@@LOG');
    expect(p.consoleTail).toContain('Attached SCSI disk');
  });

  it('reads the exit line and the vm-run verdict', () => {
    expect(p.exit).toBe(3);
    expect(p.vm).toMatchObject({ status: 'fail', exit: '3', boot_s: '4.6', log: '-' });
  });

  it('parses a quoted setup failure reason', () => {
    const q = parseConsole('@@VM status=setup exit=127 reason="no kernel/initramfs in /x (run scripts/setup.sh)"\n');
    expect(q.vm?.reason).toBe('no kernel/initramfs in /x (run scripts/setup.sh)');
  });
});

describe('slowestSteps', () => {
  it('orders check() timings slowest first, keeps n, ignores malformed lines', () => {
    expect(slowestSteps(['mkfs 2.5', 'copy 120.0', 'bad line here', 'fio 30.1', 'x notanumber'], 2)).toBe('copy 120s, fio 30.1s');
    expect(slowestSteps([])).toBe('');
  });
});
