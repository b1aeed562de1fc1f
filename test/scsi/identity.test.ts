import { describe, expect, it } from 'vitest';
import { deriveIdentity, identityFromUnitSerial } from '../../src/scsi/index.js';

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

describe('identityFromUnitSerial (configfs wwn/vpd_unit_serial)', () => {
  it('absent or empty: derived from the LUN name', () => {
    expect(identityFromUnitSerial('lun0', undefined)).toEqual(deriveIdentity('lun0'));
    expect(identityFromUnitSerial('lun0', '')).toEqual(deriveIdentity('lun0'));
  });

  it('a WWN: used as the NAA id', () => {
    expect(identityFromUnitSerial('x', 'naa.6001405aabbccddeeff0011223344556').naa).toBe('6001405aabbccddeeff0011223344556');
  });

  it('a targetcli UUID: LIO company id + its first 25 hex digits, the serial reported as written', () => {
    const uuid = '5c2e8a1b-03d4-4f5e-9a6b-7c8d9e0f1a2b';
    const id = identityFromUnitSerial('lun0', uuid);
    expect(id.naa).toBe('6001405' + '5c2e8a1b03d44f5e9a6b7c8d9');
    expect(id.serial).toBe(uuid);
  });

  it('short hex content is zero-padded; no hex digit or non-ASCII falls back to the name', () => {
    expect(identityFromUnitSerial('x', 'abc-1').naa).toBe('6001405' + 'abc1'.padEnd(25, '0'));
    expect(identityFromUnitSerial('lun9', 'zzz-xyz')).toEqual(deriveIdentity('lun9'));
    expect(identityFromUnitSerial('lun9', 'caf\u00e9')).toEqual(deriveIdentity('lun9'));
  });
});
