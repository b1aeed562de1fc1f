/**
 * `tcmu-ts service install` and the shipped unit: files land where systemd
 * and dbus-daemon read them, ExecStart names this installation, and
 * `systemd-analyze verify` accepts the unit without a single warning.
 */
import { execFile, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { installService, renderUnit } from '../../src/cli/service.js';

const CI = process.env.CI === 'true';
const haveAnalyze = spawnSync('systemd-analyze', ['--version'], { stdio: 'ignore' }).status === 0;
if (!haveAnalyze && CI) throw new Error('systemd-analyze is missing (Debian package systemd; scripts/setup.sh installs it)');

/** A program that certainly exists, standing in for node + main.js. */
const EXEC = [process.execPath, '/usr/lib/tcmu-ts/dist/src/cli/main.js'];

describe('tcmu-ts service install', () => {
  it('writes the unit, the D-Bus policy and an empty config beneath --root', () => {
    const root = mkdtempSync(join(tmpdir(), 'tcmu-svc-'));
    const done = installService({ root, exec: EXEC });
    expect(done).toEqual({
      unit: join(root, 'etc/systemd/system/tcmu-ts.service'),
      dbusPolicy: join(root, 'etc/dbus-1/system.d/tcmu-ts.conf'),
      createdConfig: join(root, 'etc/tcmu-ts/tcmu-ts.toml'),
    });
    const unit = readFileSync(done.unit, 'utf8');
    expect(unit.split('\n').filter((l) => l.startsWith('ExecStart='))).toEqual([`ExecStart=${EXEC.join(' ')} serve --config /etc/tcmu-ts/tcmu-ts.toml`]);
    expect(unit).toContain('Type=notify');
    expect(unit).toContain('WatchdogSec=');
    expect(readFileSync(done.dbusPolicy, 'utf8')).toContain('<allow own="org.kernel.TCMUService1"/>');
    expect(statSync(done.unit).mode & 0o777).toBe(0o644);
    expect(statSync(done.createdConfig!).mode & 0o777).toBe(0o600);

    // A second install keeps the admin's config.
    writeFileSync(done.createdConfig!, '[daemon]\nmetrics = "127.0.0.1:9470"\n');
    expect(installService({ root, exec: EXEC }).createdConfig).toBeUndefined();
    expect(readFileSync(done.createdConfig!, 'utf8')).toContain('metrics');
  });

  it('refuses paths systemd would split or expand', () => {
    expect(() => renderUnit(['/opt/my node/bin/node', '/x/main.js'], '/etc/tcmu-ts/tcmu-ts.toml')).toThrow('ExecStart paths must be absolute');
    expect(() => renderUnit(EXEC, '/etc/%i.toml')).toThrow('"/etc/%i.toml"');
    expect(() => installService({ root: 'relative', exec: EXEC })).toThrow('is not an absolute path');
  });

  it.skipIf(!haveAnalyze && !CI)('systemd-analyze verify accepts the installed unit without warnings', async () => {
    const root = mkdtempSync(join(tmpdir(), 'tcmu-svc-verify-'));
    // ExecStart must name an executable that exists: node itself, with a script argument.
    const { unit } = installService({ root, exec: [process.execPath, join(root, 'main.js')] });
    const result = await promisify(execFile)('systemd-analyze', ['verify', unit], { encoding: 'utf8' }).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (err: { code?: number; stderr?: string }) => ({ code: err.code ?? -1, stderr: err.stderr ?? '' }),
    );
    // Warnings ("Failed to parse ..., ignoring") exit 0: any line about our unit fails the test.
    expect(result.stderr.split('\n').filter((l) => l.includes('tcmu-ts.service'))).toEqual([]);
    expect(result.code).toBe(0);
  });
});
