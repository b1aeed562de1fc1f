// Which lock owner is this LUN's dead predecessor: address matching between
// rados_getaddrs ("[v2:ip:port/nonce,v1:...]") and lock owner strings.
import { describe, expect, it } from 'vitest';
import { entityAddresses, predecessorOwner } from '../../../handlers/rbd/predecessor.js';
import { extentsFromTriples } from '../../../handlers/rbd/store.js';

describe('rbd predecessor address matching', () => {
  it('reads entity addresses from an address vector or a bare address', () => {
    expect([...entityAddresses('[v2:127.0.0.1:0/3158294567,v1:127.0.0.1:0/3158294567]')]).toEqual(['127.0.0.1:0/3158294567']);
    expect([...entityAddresses('127.0.0.1:0/42')]).toEqual(['127.0.0.1:0/42']);
    expect([...entityAddresses('any:[::1]:0/7')]).toEqual(['[::1]:0/7']);
    expect(entityAddresses('').size).toBe(0);
    expect(entityAddresses('not an address').size).toBe(0);
  });

  it('names the owner that is the recorded predecessor, and no other', () => {
    const previous = '[v2:10.0.0.5:0/111,v1:10.0.0.5:0/111]';
    expect(predecessorOwner(['10.0.0.5:0/111'], previous)).toBe('10.0.0.5:0/111');
    expect(predecessorOwner(['10.0.0.5:0/112'], previous)).toBeUndefined(); // same host, another client (a new process)
    expect(predecessorOwner(['10.0.0.6:0/111'], previous)).toBeUndefined(); // another gateway
    expect(predecessorOwner([], previous)).toBeUndefined();
    expect(predecessorOwner(['10.0.0.5:0/111'], 'garbage')).toBeUndefined();
  });
});

describe('rbd allocation extents -> GET LBA STATUS extents', () => {
  const MiB = 1 << 20;
  it('fills gaps as deallocated, clips to the range and merges neighbours', () => {
    const t = new Float64Array([4 * MiB, 4 * MiB, 1, 8 * MiB, 4 * MiB, 1, 20 * MiB, 4 * MiB, 1]);
    expect(extentsFromTriples(t, 2 * MiB, 22 * MiB)).toEqual([
      { offset: 2 * MiB, length: 2 * MiB, state: 'deallocated' },
      { offset: 4 * MiB, length: 8 * MiB, state: 'mapped' },
      { offset: 12 * MiB, length: 8 * MiB, state: 'deallocated' },
      { offset: 20 * MiB, length: 2 * MiB, state: 'mapped' },
    ]);
  });

  it('an empty listing is one deallocated extent; a full one stops where it stopped', () => {
    expect(extentsFromTriples(new Float64Array(0), 0, MiB)).toEqual([{ offset: 0, length: MiB, state: 'deallocated' }]);
    const full = new Float64Array(3 * 4096);
    for (let i = 0; i < 4096; i++) full.set([i * 2 * MiB, MiB, 1], i * 3);
    const out = extentsFromTriples(full, 0, 1e6 * MiB);
    expect(out.at(-1)).toEqual({ offset: 4095 * 2 * MiB, length: MiB, state: 'mapped' });
  });
});
