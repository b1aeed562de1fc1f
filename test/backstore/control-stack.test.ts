/**
 * A snapshot of a stacked LUN reaches the qcow2 layer: a real stack
 * (example-passthrough layer over qcow2, opened by openStack as the daemon
 * opens a LUN), data written through the top, the layer search picking the
 * qcow2 layer for snapshot create and revert while the stack is closed (as
 * the daemon's quiesce leaves it), and the data read back through the
 * reopened stack.
 */
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { afterAll, describe, expect, it } from 'vitest';
import { createFileOpener } from '../../src/backstore/confine.js';
import { coerceControlArgs } from '../../src/backstore/control.js';
import { layerOperation, offlineOperation } from '../../src/backstore/control-registry.js';
import { type LayerSpec, openStack } from '../../src/backstore/registry.js';
import { toLunStore } from '../../src/backstore/lun-store.js';
import type { LunStore } from '../../src/backstore/types.js';
import { silentLog } from './context.js';

const dir = mkdtempSync(join(tmpdir(), 'tcmu-control-stack-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const files = createFileOpener([dir]);

describe('control operations on a stacked LUN', () => {
  it('snapshot create/revert reach the qcow2 layer under a pass-through layer', async () => {
    const path = join(dir, 'stacked.qcow2');
    const create = await offlineOperation('image.create', { path });
    await create.operation.run({ mode: 'offline', config: path, options: {}, log: silentLog }, coerceControlArgs(create.operation, { size: '4M' }));

    const layers: LayerSpec[] = [
      { handler: 'qcow2', config: path, options: {} },
      { handler: 'example-passthrough', config: '', options: {} },
    ];
    const open = async (): Promise<LunStore> => toLunStore(await openStack(layers, { blockSize: 512, readOnly: false, log: silentLog, files }));
    const block = (byte: number) => Buffer.alloc(4096, byte);
    const online = async (op: string, name: string) => {
      const found = await layerOperation(layers, op, 'LUN stacked', files);
      expect(found.index).toBe(0);
      expect(found.handler.name).toBe('qcow2');
      return found.operation.run({ mode: 'online', config: found.layer.config, options: {}, files, log: silentLog }, coerceControlArgs(found.operation, { name }));
    };

    let lun = await open();
    await lun.write(8192, [block(0xaa)], { fua: false });
    await lun.close(); // what the daemon's quiesce does before the operation
    expect(await online('snapshot.create', 'before')).toMatchObject({ value: { name: 'before' } });

    lun = await open();
    await lun.write(8192, [block(0xbb)], { fua: false });
    await lun.close();
    await online('snapshot.revert', 'before');

    lun = await open();
    const back = Buffer.alloc(4096);
    await lun.read(8192, [back]);
    await lun.close();
    expect(back.equals(block(0xaa))).toBe(true);
  });
});
