import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/backstore/config-error.js';
import { sizeOption } from '../../src/backstore/options.js';
import { parseConfig } from '../../src/config/config.js';
import { checkPositiveSize, parseSize, sizeInBytes } from '../../src/config/size.js';

describe('sizeInBytes (the one size grammar)', () => {
  it.each([
    ['0', 0],
    ['512', 512],
    ['4096', 4096],
    ['4k', 4096],
    ['1K', 1024],
    ['512MiB', 512 * 2 ** 20],
    ['64mb', 64 * 2 ** 20],
    ['2g', 2 * 2 ** 30],
    ['10G', 10 * 2 ** 30],
    ['1.5T', 1.5 * 2 ** 40],
    ['0.5K', 512],
    ['1.25M', 1.25 * 2 ** 20],
    ['1P', 2 ** 50],
    [' 8 G ', 8 * 2 ** 30],
    ['7P', 7 * 2 ** 50],
  ])('%j -> %d', (text, bytes) => {
    expect(sizeInBytes(text)).toBe(bytes);
  });

  it.each(['', ' ', '-1', '+1', '10X', '1e9', '0x10', '1..5G', '.5G', '5.G', '1.1K', '1.2345k', '1.5', '8P', '99999999P', '1 2', `${'9'.repeat(70)}`])(
    'refuses %j',
    (text) => {
      expect(sizeInBytes(text)).toBeUndefined();
    },
  );

  it('is exact where floating point is not (0.1 + 0.2 style inputs)', () => {
    expect(sizeInBytes('0.3K')).toBeUndefined(); // 307.2 bytes
    expect(sizeInBytes('4.1G')).toBeUndefined(); // 4402341478.4 bytes
    expect(sizeInBytes('4.125G')).toBe(4.125 * 2 ** 30);
    expect(sizeInBytes(`${Number.MAX_SAFE_INTEGER}`)).toBe(Number.MAX_SAFE_INTEGER);
    expect(sizeInBytes(`${Number.MAX_SAFE_INTEGER + 1}`)).toBeUndefined();
  });
});

describe('parseSize (positive sizes for a named key)', () => {
  it.each([
    ['512', 512],
    ['10G', 10 * 2 ** 30],
    ['1.5T', 1.5 * 2 ** 40],
    [1048576, 1048576],
  ])('%s -> %d', (text, bytes) => {
    expect(parseSize(text, 'size')).toBe(bytes);
  });

  it.each(['', '-1', '10X', '0', '1.2345k', 0, -4096, 1.5])('refuses %j with a ConfigError naming the key', (value) => {
    let caught: unknown;
    try {
      parseSize(value, '--size');
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as ConfigError).code).toBe('ECONFIG');
    expect((caught as Error).message).toMatch(/^--size: /);
  });

  it('says why', () => {
    expect(checkPositiveSize('0')).toEqual({ reason: '"0" is zero bytes; a size must be positive' });
    expect(checkPositiveSize('lots')).toEqual({ reason: expect.stringContaining('"lots" is not a size') });
    expect(checkPositiveSize(-1)).toEqual({ reason: 'expected a positive integer byte count, got -1' });
  });
});

describe('the same forms everywhere', () => {
  it.each(['1.5G', '512MiB', '2g', '1048576'])('%j means the same bytes in the config file, the CLI and a handler option', (text) => {
    const fromConfig = parseConfig(`[lun.a]\nbackstore = "ram"\nsize = "${text}"\n`).luns[0]!.size;
    const fromCli = parseSize(text, '--size');
    const fromOption = sizeOption('ram', { size: text }, 'size');
    expect(fromConfig).toBe(sizeInBytes(text));
    expect(fromCli).toBe(fromConfig);
    expect(fromOption).toBe(fromConfig);
  });
});
