// Control operations on a stack written as a dev_config: the layer search
// sees every layer of the string, so snapshot operations reach the qcow2
// layer under a layer above it.
import { describe, expect, it } from 'vitest';
import { layerOperation } from '../../src/backstore/control-registry.js';
import { layersOfDevConfig } from '../../src/backstore/registry.js';

describe('control operations on a written stack', () => {
  it('layersOfDevConfig gives every layer of a stack, bottom first (the order openStack opens)', () => {
    expect(layersOfDevConfig('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd')).toEqual([
      { handler: 'qcow2', config: '/srv/a.qcow2', options: { compress: 'zstd' } },
      { handler: 'crypt', config: '', options: { key: 'k1' } },
    ]);
  });

  it('finds snapshot create in the qcow2 layer under a layer', async () => {
    const found = await layerOperation(layersOfDevConfig('example-passthrough/>qcow2//srv/a.qcow2'), 'snapshot.create', 'LUN web');
    expect(found.handler.name).toBe('qcow2');
    expect(found.index).toBe(0);
    expect(found.layer.config).toBe('/srv/a.qcow2');
  });

  it('names the whole written stack when no layer offers it', async () => {
    await expect(layerOperation(layersOfDevConfig('example-passthrough/>file//srv/a.img'), 'snapshot.create', 'LUN web')).rejects.toThrow(
      'LUN web (example-passthrough over file): no layer offers snapshot create',
    );
  });
});
