/**
 * Online control operations on a served LUN (src/daemon/lun-control.ts):
 * the LUN's layers are asked (not its subtype), operations that change the
 * image run inside the LUN's quiesce bracket and listing runs outside it,
 * and the daemon's confined opener is the one the operation uses. The
 * image and the qcow2 handler are real; the LUN is reduced to the part
 * these operations touch (the real bracket is exercised in the VM by
 * test/kernel/qcow2-lun.test.ts).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileOpener } from '../../src/backstore/confine.js';
import { offlineOperation } from '../../src/backstore/control-registry.js';
import { type ControlledLun, runLunControl } from '../../src/daemon/lun-control.js';
import { tempDir } from '../handlers/qcow2/qemu.js';

const tmp = tempDir('lun-control');
afterAll(() => tmp.cleanup());
const allowed = tmp.path('allowed');
mkdirSync(allowed, { recursive: true });
const files = createFileOpener([allowed]);

class RecordingLun implements ControlledLun {
  readonly log = pino({ level: 'silent' });
  readonly events: string[] = [];
  constructor(readonly id: string, private devConfig: string) {}
  status() {
    return { devConfig: this.devConfig };
  }
  reconfigure(devConfig: string) {
    this.devConfig = devConfig;
  }
  async quiesced<T>(fn: () => Promise<T>): Promise<T> {
    this.events.push('quiesce');
    try {
      return await fn();
    } finally {
      this.events.push('resume');
    }
  }
  async besideIo<T>(index: number, fn: (layer: undefined, signal: AbortSignal) => Promise<T>): Promise<T> {
    this.events.push(`beside ${index}`);
    return fn(undefined, new AbortController().signal);
  }
}

async function image(name: string): Promise<string> {
  const path = join(allowed, name);
  const create = await offlineOperation('image.create', { path, format: 'qcow2' });
  await create.operation.run({ mode: 'offline', config: path, options: {}, log: pino({ level: 'silent' }) }, { size: 4 << 20, 'cluster-size': 65536, compat: '3' });
  return path;
}

describe('runLunControl', () => {
  it('runs snapshot operations on the qcow2 layer of the LUN, quiescing around changes only', async () => {
    const path = await image('a.qcow2');
    const lun = new RecordingLun('user_1/a', `qcow2/${path}`);
    const created = await runLunControl(lun, 'snapshot.create', { name: 's1' }, files);
    expect(created).toMatchObject({ value: { name: 's1' }, text: 'snapshot s1 created' });
    expect(lun.events).toEqual(['quiesce', 'resume']);
    const listed = await runLunControl(lun, 'snapshot.list', {}, files);
    expect((listed.value as Array<{ name: string }>).map((s) => s.name)).toEqual(['s1']);
    expect(lun.events).toEqual(['quiesce', 'resume', 'beside 0']); // listing runs beside I/O, on layer 0 (the only one)
    await runLunControl(lun, 'snapshot.revert', { name: 's1' }, files);
    await runLunControl(lun, 'snapshot.delete', { name: 's1' }, files);
    expect(lun.events).toEqual(['quiesce', 'resume', 'beside 0', 'quiesce', 'resume', 'quiesce', 'resume']);
    expect((await runLunControl(lun, 'snapshot.list', {}, files)).value).toEqual([]);
  });

  it('follows the current dev_config after a RECONFIG, and stays inside the allowed directories', async () => {
    const first = await image('b1.qcow2');
    const second = await image('b2.qcow2');
    const lun = new RecordingLun('user_1/b', `qcow2/${first}`);
    lun.reconfigure(`qcow2/${second}`);
    await runLunControl(lun, 'snapshot.create', { name: 'after' }, files);
    expect((await runLunControl(new RecordingLun('x', `qcow2/${second}`), 'snapshot.list', {}, files)).value).toMatchObject([{ name: 'after' }]);
    expect((await runLunControl(new RecordingLun('x', `qcow2/${first}`), 'snapshot.list', {}, files)).value).toEqual([]);
    // An image that exists, one directory above the allowed one.
    await image('../outside.qcow2');
    const escaped = new RecordingLun('user_1/c', `qcow2/${allowed}/../outside.qcow2`);
    await expect(runLunControl(escaped, 'snapshot.create', { name: 'x' }, files)).rejects.toThrow(/refused, it resolves outside the allowed directories/);
    expect(escaped.events).toEqual(['quiesce', 'resume']);
  });

  it('refuses clearly: no layer offering it, an offline-only operation, bad names and arguments', async () => {
    const path = await image('c.qcow2');
    const fileLun = new RecordingLun('user_1/plain', 'file//srv/plain.img');
    await expect(runLunControl(fileLun, 'snapshot.create', { name: 'x' }, files)).rejects.toThrow(
      'LUN user_1/plain (file): no layer offers snapshot create on a served LUN (offered by: qcow2, rbd)',
    );
    const lun = new RecordingLun('user_1/q', `qcow2/${path}`);
    await expect(runLunControl(lun, 'image.check', {}, files)).rejects.toThrow(/no layer offers image check on a served LUN \(offered by: none\)/);
    await expect(runLunControl(lun, 'snapshot', {}, files)).rejects.toMatchObject({ code: 'EINVAL' });
    await expect(runLunControl(lun, 'snapshot.create', {}, files)).rejects.toThrow(/name is required/);
    await expect(runLunControl(lun, 'snapshot.create', { name: 'x', size: '1G' }, files)).rejects.toThrow(/unknown argument "size"/);
    expect(lun.events).toEqual([]); // nothing was quiesced for a refused request
  });
});
