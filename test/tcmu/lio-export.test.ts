// Exports against a stand-in configfs tree (a temp dir): where the export
// writes the target's completion affinity, and that it refuses an explicit
// request the kernel cannot honour. The real kernel side is covered by the
// lun-churn scenario (test/kernel/lifecycle.test.ts).
import { mkdir, mkdtemp, readFile, readdir, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createTcmuDevice, defaultMaxSectors, exportIscsi, exportLoop, parseCompletionAffinity, wwnFor } from '../../src/lio/export.js';

let root: string;

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'tcmu-lio-'));
  await mkdir(join(root, 'core', 'user_1', 'disk0'), { recursive: true });
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/**
 * What the kernel makes with a target: its param group, at the default
 * (-1), and the TPG's attrib group that the iSCSI export writes to.
 */
async function kernelMakesTarget(targetDir: string): Promise<string> {
  await mkdir(join(targetDir, 'param'), { recursive: true });
  for (const group of ['attrib', 'param', 'np', 'acls', 'auth']) await mkdir(join(targetDir, 'tpgt_1', group), { recursive: true });
  const attr = join(targetDir, 'param', 'cmd_completion_affinity');
  await writeFile(attr, '-1');
  return attr;
}

describe('exportLoop completion affinity', () => {
  const loopTarget = () => join(root, 'loopback', wwnFor('disk0', 'loop-target'));

  it("defaults to 'current' (-2): completions run on the runner's CPU", async () => {
    const attr = await kernelMakesTarget(loopTarget());
    expect(await exportLoop('disk0', {}, root)).toBe(wwnFor('disk0', 'loop-target'));
    expect(await readFile(attr, 'utf8')).toBe('-2');
  });

  it("writes -1 for 'submitter'", async () => {
    const attr = await kernelMakesTarget(loopTarget());
    await exportLoop('disk0', { completionAffinity: 'submitter' }, root);
    expect(await readFile(attr, 'utf8')).toBe('-1');
  });

  it('exports without the attribute on kernels that lack it, unless current was asked for explicitly', async () => {
    await exportLoop('disk0', {}, root);
    expect((await stat(join(loopTarget(), 'tpgt_1', 'lun', 'lun_0'))).isDirectory()).toBe(true);
  });

  it("refuses an explicit 'current' the kernel cannot honour, before any LUN link", async () => {
    await expect(exportLoop('disk0', { completionAffinity: 'current' }, root)).rejects.toThrow(/no cmd_completion_affinity/);
    // The LUN directory it made is gone (a plain directory tree cannot drop
    // the TPG's default groups the way configfs does, so the TPG stays here).
    expect(await readdir(join(loopTarget(), 'tpgt_1', 'lun'))).toEqual([]);
    await expect(stat(join(loopTarget(), 'tpgt_1', 'nexus'))).rejects.toThrow(/ENOENT/);
  });
});

const ANY = { portal: '127.0.0.1:3260', initiators: 'any' as const };

describe('exportIscsi completion affinity', () => {
  const iqn = 'iqn.2026-11.io.tcmu-ts:disk0';

  it("leaves the kernel's default unless asked", async () => {
    const attr = await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', ANY, root);
    expect(await readFile(attr, 'utf8')).toBe('-1');
  });

  it("writes -2 for 'current'", async () => {
    const attr = await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', { ...ANY, completionAffinity: 'current' }, root);
    expect(await readFile(attr, 'utf8')).toBe('-2');
  });
});

describe('exportIscsi access control', () => {
  const iqn = 'iqn.2026-11.io.tcmu-ts:disk0';
  const tpg = () => join(root, 'iscsi', iqn, 'tpgt_1');
  const read = (...p: string[]) => readFile(join(tpg(), ...p), 'utf8');
  const chap = { userid: 'web1', password: 'very-secret-0123' };

  it('maps LUN 0 into one ACL per listed initiator, demo mode off, CHAP enforced', async () => {
    await kernelMakesTarget(join(root, 'iscsi', iqn));
    const initiators = ['iqn.1993-08.org.debian:01:web1', 'iqn.1993-08.org.debian:01:web2'];
    await exportIscsi('disk0', { portal: '127.0.0.1:3260', initiators, chap: { ...chap, mutual: { userid: 'tgt', password: 'other-secret-4567' } } }, root);
    expect(await read('attrib', 'generate_node_acls')).toBe('0');
    expect(await read('attrib', 'authentication')).toBe('1');
    expect(await read('param', 'AuthMethod')).toBe('CHAP');
    expect(await readdir(join(tpg(), 'acls'))).toEqual(initiators);
    for (const ini of initiators) {
      expect(await readlink(join(tpg(), 'acls', ini, 'lun_0', 'lun_0'))).toBe(join(tpg(), 'lun', 'lun_0'));
      expect(await read('acls', ini, 'auth', 'userid')).toBe('web1');
      expect(await read('acls', ini, 'auth', 'password')).toBe('very-secret-0123');
      expect(await read('acls', ini, 'auth', 'userid_mutual')).toBe('tgt');
      expect(await read('acls', ini, 'auth', 'password_mutual')).toBe('other-secret-4567');
    }
    expect(await readdir(join(tpg(), 'np'))).toEqual(['127.0.0.1:3260']);
    expect(await read('enable')).toBe('1');
  });

  it('turns on demo mode only for an explicit "any", with TPG-wide CHAP when given', async () => {
    await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', { ...ANY, chap }, root);
    expect(await read('attrib', 'generate_node_acls')).toBe('1');
    expect(await read('attrib', 'demo_mode_write_protect')).toBe('0');
    expect(await read('attrib', 'authentication')).toBe('1');
    expect(await read('auth', 'userid')).toBe('web1');
    expect(await readdir(join(tpg(), 'acls'))).toEqual([]);
  });

  it('without CHAP leaves authentication off (the ACL list is the only gate)', async () => {
    await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', { portal: '127.0.0.1:3260', initiators: ['iqn.2020-01.org.example:h'] }, root);
    expect(await read('attrib', 'authentication')).toBe('0');
    await expect(stat(join(tpg(), 'acls', 'iqn.2020-01.org.example:h', 'auth', 'password'))).rejects.toThrow(/ENOENT/);
  });

  it.each([
    [{ portal: '127.0.0.1:3260', initiators: [] }, /needs initiator IQNs .* or explicitly "any"/],
    [{ portal: '', initiators: 'any' }, /portal "" is not a portal/],
    [{ portal: '127.0.0.1:3260', initiators: ['../../core'] }, /initiator "\.\.\/\.\.\/core" is not an iSCSI name/],
    [{ portal: '127.0.0.1:3260', initiators: 'any', iqn: 'iqn.2020-01.x/../../y' }, /target name .* is not an iSCSI name/],
  ])('refuses %j before touching configfs', async (opts, message) => {
    await expect(exportIscsi('disk0', opts as never, root)).rejects.toThrow(message);
    await expect(stat(join(root, 'iscsi'))).rejects.toThrow(/ENOENT/);
  });

  it('refuses LUN names that leave core/user_N', async () => {
    await expect(exportIscsi('..', ANY, root)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(exportLoop('.', {}, root)).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('removes the half-made target when the kernel refuses part of the export', async () => {
    await kernelMakesTarget(join(root, 'iscsi', iqn));
    await rm(join(tpg(), 'auth'), { recursive: true }); // a kernel without TPG-wide CHAP
    await expect(exportIscsi('disk0', { ...ANY, chap }, root)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
    expect(await readdir(join(tpg(), 'lun'))).toEqual([]);
    await expect(stat(join(tpg(), 'np', '127.0.0.1:3260'))).rejects.toThrow(/ENOENT/);
  });
});

describe('parseCompletionAffinity', () => {
  it('accepts current and submitter, and names the option otherwise', () => {
    expect(parseCompletionAffinity('current', '--completion-affinity')).toBe('current');
    expect(parseCompletionAffinity('submitter', '--completion-affinity')).toBe('submitter');
    expect(() => parseCompletionAffinity('-2', '--completion-affinity')).toThrow('--completion-affinity: "-2" is not one of current, submitter');
  });
});

describe('largest transfer (hw_max_sectors)', () => {
  it('defaults to 1 MiB per command, never fewer than 1024 blocks', () => {
    expect(defaultMaxSectors(512)).toBe(2048);
    expect(defaultMaxSectors(4096)).toBe(1024);
  });

  it.each([Number.NaN, 0, -8, 1.5])('refuses max sectors %s before making anything', async (maxSectors) => {
    await expect(createTcmuDevice({ name: 'disk1', devConfig: 'file//srv/a.img', size: 1 << 20, maxSectors }, root)).rejects.toThrow(
      /max sectors must be a positive whole number of blocks/,
    );
    expect(await readdir(join(root, 'core', 'user_1'))).toEqual(['disk0']);
  });
});
