import { mkdtempSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assertPathAllowed, pathOfDevConfig } from '../../src/daemon/paths.js';

describe('backing path confinement', () => {
  const root = mkdtempSync(join(tmpdir(), 'tcmu-paths-'));
  const allowed = join(root, 'allowed');
  const outside = join(root, 'outside');
  mkdirSync(allowed);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'x');
  symlinkSync(join(outside, 'secret'), join(allowed, 'sneaky.img'));

  it('accepts files inside (existing or not)', () => {
    expect(() => assertPathAllowed(join(allowed, 'lun.img'), [allowed])).not.toThrow();
    expect(() => assertPathAllowed(join(allowed, 'sub', 'new.img'), [allowed])).not.toThrow();
  });
  it('rejects files outside, .. escapes and symlinks that leave', () => {
    expect(() => assertPathAllowed(join(outside, 'secret'), [allowed])).toThrow(/outside the allowed directories/);
    expect(() => assertPathAllowed(join(allowed, '..', 'outside', 'secret'), [allowed])).toThrow(/outside/);
    expect(() => assertPathAllowed(join(allowed, 'sneaky.img'), [allowed])).toThrow(/outside/);
  });
  it('allows anything when no directories are configured', () => {
    expect(() => assertPathAllowed('/etc/passwd', [])).not.toThrow();
  });
  it('finds the path in a dev_config', () => {
    expect(pathOfDevConfig('file//var/lib/a.img')).toBe('/var/lib/a.img');
    expect(pathOfDevConfig('qcow2//var/lib/a.qcow2;ro=1')).toBe('/var/lib/a.qcow2');
    expect(pathOfDevConfig('ram/')).toBeUndefined();
  });
});
