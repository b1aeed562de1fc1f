import { describe, expect, it } from 'vitest';
import { validateIscsiName, validateKeyName, validateLunName, validatePortal } from '../../src/config/names.js';

describe('validateLunName (config, CLI, control socket, lio.ts)', () => {
  it.each(['disk0', 'db-1', 'a.b_c', '9', 'x'.repeat(64)])('accepts %j', (name) => {
    expect(() => validateLunName(name)).not.toThrow();
  });
  it.each(['', '.', '..', '.hidden', '-rf', '_x', 'a/b', '../x', 'a b', 'a\nb', 'é', 'x'.repeat(65)])('refuses %j with code EINVAL', (name) => {
    expect(() => validateLunName(name)).toThrow(expect.objectContaining({ code: 'EINVAL', message: expect.stringMatching(/^LUN name .* is invalid/) }));
  });
  it('bounds and escapes what it echoes', () => {
    expect(() => validateLunName(`\u0000${'a'.repeat(500)}`)).toThrow(/^LUN name "\\u0000a{79}…" is invalid/);
  });
  it('uses the same rule for CHAP key names', () => {
    expect(() => validateKeyName('..')).toThrow(/CHAP key name "\.\." is invalid/);
    expect(() => validateKeyName('web1-chap')).not.toThrow();
  });
});

describe('validateIscsiName', () => {
  it.each(['iqn.1993-08.org.debian:01:abc', 'iqn.2026-11.io.tcmu-ts:disk0', 'iqn.2020-01.com.example', 'eui.0123456789abcdef', 'naa.5001405000000001'])(
    'accepts %j',
    (name) => expect(() => validateIscsiName('initiator', name)).not.toThrow(),
  );
  it.each(['', 'any', 'iqn.x', 'iqn.2020-01.a/b', 'iqn.2020-01.A.B', '..', 'eui.123', 'iqn.2020-01.a:b c'])('refuses %j', (name) => {
    expect(() => validateIscsiName('initiator', name)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});

describe('validatePortal', () => {
  it.each(['127.0.0.1:3260', '0.0.0.0:3260', '[::1]:3260', '[fe80::1]:860'])('accepts %j', (p) => {
    expect(validatePortal('portal', p)).toBe(p);
  });
  it.each(['', '127.0.0.1', 'localhost:3260', '1.2.3.256:3260', '01.2.3.4:3260', '1.2.3.4:65536', '1.2.3.4:0', '[1.2.3.4]:3260', '1.2.3.4:3260/x'])('refuses %j', (p) => {
    expect(() => validatePortal('portal', p)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
  });
});
