/**
 * The qcow2 handler's control operations, reached as the CLI and the daemon
 * reach them: through the registry by name, arguments checked by the core
 * (`coerceControlArgs`), run on real images. Results match what the library
 * functions (api.ts) and qemu-img say about the same image.
 */
import { openSync, writeSync, closeSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileOpener } from '../../../src/backstore/confine.js';
import { coerceControlArgs, operationOf } from '../../../src/backstore/control.js';
import { resolveHandler } from '../../../src/backstore/registry.js';
import type { ControlContext, ControlMode, ControlResult } from '../../../src/backstore/types.js';
import { geometry } from './craft.js';
import { qemuImgAvailable, qemuImgOk, tempDir } from './qemu.js';

const tmp = tempDir('control');
afterAll(() => tmp.cleanup());
const log = pino({ level: 'silent' });

async function run(op: string, config: string, raw: Record<string, unknown> = {}, over: Partial<ControlContext> = {}): Promise<ControlResult> {
  const handler = await resolveHandler('qcow2', false);
  const operation = operationOf(handler.control, op);
  if (!operation) throw new Error(`qcow2 does not offer ${op}`);
  const mode: ControlMode = over.mode ?? 'offline';
  expect(operation.modes).toContain(mode);
  return operation.run({ mode, config, options: {}, log, ...over }, coerceControlArgs(operation, raw));
}

describe('qcow2 control operations', () => {
  it('declares image create/check offline; info, compact and snapshots offline and online', async () => {
    const { control } = await resolveHandler('qcow2', false);
    const ops = control!.operations;
    expect(Object.keys(ops)).toEqual(['image.create', 'image.info', 'image.check', 'image.compact', 'snapshot.create', 'snapshot.list', 'snapshot.revert', 'snapshot.delete']);
    for (const name of ['image.create', 'image.check']) expect(ops[name]!.modes).toEqual(['offline']);
    for (const name of ['image.info', 'image.compact']) {
      expect(ops[name]!.modes).toEqual(['offline', 'online']);
      expect(ops[name]!.quiesce).toBe(false); // online they run beside the LUN's I/O, on the open image
    }
    for (const name of ['snapshot.create', 'snapshot.list', 'snapshot.revert', 'snapshot.delete']) expect(ops[name]!.modes).toEqual(['offline', 'online']);
    expect(ops['snapshot.list']!.quiesce).toBe(false);
    expect(ops['snapshot.create']!.quiesce).toBeUndefined(); // quiesced by default
  });

  it('image create takes CLI strings (sizes, defaults) and makes the image info describes', async () => {
    const base = tmp.path('base.qcow2');
    const overlay = tmp.path('overlay.qcow2');
    expect(await run('image.create', base, { size: '16M' })).toEqual({ value: { created: base }, text: `created ${base}` });
    await run('image.create', overlay, { size: '16M', backing: base, 'cluster-size': '4k', compat: '2' });
    const info = (await run('image.info', overlay)).value as Record<string, unknown>;
    expect(info).toMatchObject({ format: 'qcow2', version: 2, virtualSize: 16 << 20, clusterSize: 4096, backingFile: base, backingFormat: 'qcow2', snapshots: [] });
    expect((await run('image.info', base)).value).toMatchObject({ version: 3, clusterSize: 65536 });
    if (qemuImgAvailable()) expect(JSON.parse(qemuImgOk('info', '--output=json', overlay))['cluster-size']).toBe(4096);
    await expect(run('image.create', tmp.path('bad.qcow2'), { size: '1M', compat: '4' })).rejects.toThrow(/compat: "4" is not one of 2, 3/);
    await expect(run('image.create', tmp.path('bad.qcow2'), {})).rejects.toThrow(/size is required/);
  });

  it('image check: exit 0 when clean, 3 on a leak, 0 after --repair-leaks', async () => {
    const path = tmp.path('leak.qcow2');
    await run('image.create', path, { size: '4M' });
    expect(await run('image.check', path)).toMatchObject({ value: { corruptions: 0, leaks: 0 }, exitCode: 0 });
    // Leak one cluster: grow the file by two clusters and count the first as used.
    const g = geometry(path);
    const fd = openSync(path, 'r+');
    try {
      writeSync(fd, Buffer.alloc(2 * g.clusterSize), 0, 2 * g.clusterSize, 4 * g.clusterSize);
      const refcountBlock = 2 * g.clusterSize; // create.ts: header, refcount table, then the first refcount block
      const one = Buffer.from([0, 1]);
      writeSync(fd, one, 0, 2, refcountBlock + 4 * 2);
    } finally {
      closeSync(fd);
    }
    expect(await run('image.check', path)).toMatchObject({ value: { corruptions: 0, leaks: 1 }, exitCode: 3 });
    expect(await run('image.check', path, { 'repair-leaks': true })).toMatchObject({ value: { leaksFixed: 1 }, exitCode: 0 });
    expect(await run('image.check', path)).toMatchObject({ value: { corruptions: 0, leaks: 0 }, exitCode: 0 });
  });

  it('snapshots: create, list (text as the CLI prints it), revert, delete', async () => {
    const path = tmp.path('snap.qcow2');
    await run('image.create', path, { size: '4M' });
    expect((await run('snapshot.create', path, { name: 's1' })).text).toBe('snapshot s1 created');
    await run('snapshot.create', path, { name: 's2' });
    const listed = await run('snapshot.list', path);
    const list = listed.value as Array<{ id: string; name: string; date: string }>;
    expect(list.map((s) => s.name)).toEqual(['s1', 's2']);
    expect(listed.text).toBe(list.map((s) => `${s.id.padEnd(6)} ${s.name.padEnd(24)} ${s.date}`).join('\n'));
    expect(await run('snapshot.revert', path, { name: 's1' })).toEqual({ value: { reverted: 's1' }, text: 'reverted to s1' });
    expect(await run('snapshot.delete', path, { name: 's2' })).toEqual({ value: { deleted: 's2' }, text: 'snapshot s2 deleted' });
    expect((await run('snapshot.list', path)).value).toMatchObject([{ name: 's1' }]);
    await expect(run('snapshot.delete', path, { name: 'nope' })).rejects.toThrow(/no snapshot named 'nope'/);
    await expect(run('snapshot.create', path, {})).rejects.toThrow(/name is required/);
    if (qemuImgAvailable()) expect(qemuImgOk('snapshot', '-l', path)).toMatch(/ s1 /);
  });

  it('online: every file goes through the daemon opener, and the path must be absolute', async () => {
    const allowed = tmp.path('allowed');
    mkdirSync(allowed, { recursive: true });
    const inside = join(allowed, 'in.qcow2');
    const outside = tmp.path('out.qcow2');
    await run('image.create', inside, { size: '4M' });
    await run('image.create', outside, { size: '4M' });
    const files = createFileOpener([allowed]);
    expect((await run('snapshot.create', inside, { name: 'a' }, { mode: 'online', files })).value).toMatchObject({ name: 'a' });
    await expect(run('snapshot.create', outside, { name: 'a' }, { mode: 'online', files })).rejects.toThrow(/refused, it is not under any allowed directory/);
    await expect(run('snapshot.list', 'in.qcow2', {}, { mode: 'online', files })).rejects.toMatchObject({ code: 'EINVAL' });
  });

  it('probe recognises qcow2 and nothing else', async () => {
    const { control } = await resolveHandler('qcow2', false);
    const files = createFileOpener([]);
    const image = tmp.path('probe.qcow2');
    await run('image.create', image, { size: '1M' });
    const raw = tmp.path('probe.raw');
    writeFileSync(raw, Buffer.alloc(4096));
    const short = tmp.path('probe.short');
    writeFileSync(short, 'QF');
    expect(await control!.probe!(image, files)).toBe(true);
    expect(await control!.probe!(raw, files)).toBe(false);
    expect(await control!.probe!(short, files)).toBe(false);
  });
});
