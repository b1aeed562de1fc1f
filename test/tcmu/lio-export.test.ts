// Exports against a stand-in configfs tree (a temp dir): where the export
// writes the target's completion affinity, and that it refuses an explicit
// request the kernel cannot honour. The real kernel side is covered by the
// lun-churn scenario (test/kernel/lifecycle.test.ts).
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { exportIscsi, exportLoop, parseCompletionAffinity, wwnFor } from '../../src/tcmu/lio.js';

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
  await mkdir(join(targetDir, 'tpgt_1', 'attrib'), { recursive: true });
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

describe('exportIscsi completion affinity', () => {
  const iqn = 'iqn.2026-11.io.tcmu-ts:disk0';

  it("leaves the kernel's default unless asked", async () => {
    const attr = await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', {}, root);
    expect(await readFile(attr, 'utf8')).toBe('-1');
  });

  it("writes -2 for 'current'", async () => {
    const attr = await kernelMakesTarget(join(root, 'iscsi', iqn));
    await exportIscsi('disk0', { completionAffinity: 'current' }, root);
    expect(await readFile(attr, 'utf8')).toBe('-2');
  });
});

describe('parseCompletionAffinity', () => {
  it('accepts current and submitter, and names the option otherwise', () => {
    expect(parseCompletionAffinity('current', '--completion-affinity')).toBe('current');
    expect(parseCompletionAffinity('submitter', '--completion-affinity')).toBe('submitter');
    expect(() => parseCompletionAffinity('-2', '--completion-affinity')).toThrow('--completion-affinity: "-2" is not one of current, submitter');
  });
});
