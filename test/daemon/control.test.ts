import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { controlRequest, startControlServer } from '../../src/daemon/control.js';

describe('control socket', () => {
  const path = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
  const servers: Array<{ close: () => void }> = [];
  afterAll(() => servers.forEach((s) => s.close()));

  it('answers requests, reports handler errors with their code, and guards a single instance', async () => {
    servers.push(
      await startControlServer(path, async (req) => {
        if (req.cmd === 'status') return { pid: 42, luns: [] };
        throw Object.assign(new Error(`unknown control command ${JSON.stringify(req.cmd)}`), { code: 'EINVAL' });
      }),
    );
    await expect(controlRequest(path, { cmd: 'status' })).resolves.toEqual({ pid: 42, luns: [] });
    await expect(controlRequest(path, { cmd: 'nope' })).rejects.toMatchObject({
      message: 'unknown control command "nope"',
      code: 'EINVAL',
    });
    await expect(startControlServer(path, async () => null)).rejects.toMatchObject({ code: 'EALREADY' });
  });

  it('replaces a stale socket left by a dead daemon', async () => {
    const stale = join(mkdtempSync(join(tmpdir(), 'tcmu-ctl-')), 'control.sock');
    const first = await startControlServer(stale, async () => 'first');
    // Simulate a crash: stop listening without unlinking the socket file.
    await new Promise<void>((resolve) => first.close(() => resolve()));
    const { writeFileSync } = await import('node:fs');
    writeFileSync(stale, ''); // a leftover file where the socket was
    const second = await startControlServer(stale, async () => 'second');
    servers.push(second);
    await expect(controlRequest(stale, { cmd: 'x' })).resolves.toBe('second');
  });

  it('says clearly when no daemon runs', async () => {
    await expect(controlRequest(join(tmpdir(), 'no-such-tcmu-ts.sock'), { cmd: 'status' })).rejects.toMatchObject({
      code: 'ENOENT',
    });
  });
});
