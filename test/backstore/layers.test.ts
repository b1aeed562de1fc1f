import { describe, expect, it } from 'vitest';
import { composeLayers } from '../../src/backstore/layers.js';
import type { Backstore } from '../../src/backstore/types.js';

const layer = (name: string, extra: Partial<Backstore> = {}): Backstore => ({
  size: 4096,
  blockSize: 512,
  read: () => undefined,
  close: () => undefined,
  ...extra,
  // a method that tells which layer answered
  blockStatus: async () => [{ offset: 0, length: 512, state: name === 'top' ? 'mapped' : 'deallocated' }],
});

describe('composeLayers', () => {
  it('I/O methods come from the top layer, the exclusive lock holder from the layer that talks to the shared medium', async () => {
    const bottom = layer('bottom', { exclusiveLockHolder: async () => 'other' });
    const stack = composeLayers([bottom, layer('middle'), layer('top')]);
    expect(await stack.blockStatus!(0, 512)).toEqual([{ offset: 0, length: 512, state: 'mapped' }]);
    expect(await stack.exclusiveLockHolder!()).toBe('other');
  });

  it('a stack without such a layer has no exclusive lock holder', () => {
    expect(composeLayers([layer('bottom'), layer('top')]).exclusiveLockHolder).toBeUndefined();
  });
});
