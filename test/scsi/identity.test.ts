import { describe, expect, it } from 'vitest';
import { deriveIdentity } from '../../src/scsi/index.js';

describe('deriveIdentity', () => {
  it('is stable per LUN name and distinct across names', () => {
    const a = deriveIdentity('lun0');
    expect(deriveIdentity('lun0')).toEqual(a);
    expect(deriveIdentity('lun1').naa).not.toBe(a.naa);
    expect(deriveIdentity('lun1').serial).not.toBe(a.serial);
  });

  it('makes an NAA 6 IEEE registered extended id with the LIO company id', () => {
    const { naa, serial, vendor, product, revision } = deriveIdentity('disk-a');
    expect(naa).toMatch(/^6001405[0-9a-f]{25}$/);
    expect(serial).toBe(naa.slice(7));
    expect(vendor.length).toBeLessThanOrEqual(8);
    expect(product.length).toBeLessThanOrEqual(16);
    expect(revision.length).toBeLessThanOrEqual(4);
  });

  it.each([
    ['naa.6001405AABBCCDDEEFF0011223344556', '6001405aabbccddeeff0011223344556'],
    ['0x5001405abcdef012', '5001405abcdef012'],
    ['6001405aabbccddeeff0011223344556', '6001405aabbccddeeff0011223344556'],
  ])('accepts wwn %s', (wwn, naa) => {
    expect(deriveIdentity('x', { wwn }).naa).toBe(naa);
  });

  it.each([['naa.5001'], ['zz01405abcdef012'], ['6001405abcdef012'], ['5001405aabbccddeeff0011223344556']])('rejects wwn %s', (wwn) => {
    expect(() => deriveIdentity('x', { wwn })).toThrow(TypeError);
  });
});
