import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/backstore/config-error.js';
import {
  DEV_CONFIG_MAX_LENGTH,
  type DevLayer,
  formatDevConfig,
  formatDevStack,
  MAX_STACK_LAYERS,
  parseDevConfig,
  subtypeOf,
} from '../../src/backstore/dev-config.js';
import { Rng } from '../fuzz/lib/rng.js';

const layer = (handler: string, config: string, options: Record<string, string> = {}): DevLayer => ({ handler, config, options });

describe('parseDevConfig', () => {
  it('splits tcmu-runner style subtype/config', () => {
    expect(parseDevConfig('file//var/lib/lun.img')).toEqual({ ...layer('file', '/var/lib/lun.img'), layers: [layer('file', '/var/lib/lun.img')] });
    expect(parseDevConfig('ram/')).toMatchObject({ handler: 'ram', config: '', options: {} });
    expect(parseDevConfig('qcow2//images/a b.qcow2')).toMatchObject({ handler: 'qcow2', config: '/images/a b.qcow2', options: {} });
  });

  it('parses ;key=value options after the config', () => {
    expect(parseDevConfig('file//var/lib/lun.img;extend=1;create=1')).toMatchObject({
      handler: 'file',
      config: '/var/lib/lun.img',
      options: { extend: '1', create: '1' },
    });
    expect(parseDevConfig('ram/;size=1G').options).toEqual({ size: '1G' });
    expect(parseDevConfig('x/;key=a=b;empty=').options).toEqual({ key: 'a=b', empty: '' });
  });

  it('gives options a null prototype, so "constructor" is just a key', () => {
    const { options } = parseDevConfig('ram/;size=1M');
    expect(options.constructor).toBeUndefined();
    expect(parseDevConfig('ram/;constructor=1').options.constructor).toBe('1');
  });

  it.each([
    ['file', /has no '\/'/],
    ['/var/lib/x', /handler name "" is invalid/],
    ['File//x', /handler name "File" is invalid/],
    ['file//a,b', /contains ','/],
    ['file//a\nb', /control character U\+000A/],
    ['file//x;create', /option "create" has no '='/],
    ['file//x;=1', /option key "" is invalid/],
    ['file//x;Create=1', /option key "Create" is invalid/],
    ['file//x;create=1;create=0', /option "create" is given twice/],
    [`file//${'a'.repeat(250)}`, /256 characters; the kernel allows at most 255/],
  ])('rejects %j', (input, message) => {
    expect(() => parseDevConfig(input)).toThrow(message);
  });

  it('errors quote the dev_config and name the handler and the key', () => {
    expect(() => parseDevConfig('file//x;bad')).toThrow('dev_config "file//x;bad": handler "file": option "bad" has no \'=\'');
  });
});

describe('stacks (layers joined by ">", top first)', () => {
  it('parses the examples of the docs', () => {
    expect(parseDevConfig('crypt/;key=k1>file//srv/a.img').layers).toEqual([layer('crypt', '', { key: 'k1' }), layer('file', '/srv/a.img')]);
    const parsed = parseDevConfig('crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd');
    expect(parsed.layers).toEqual([layer('crypt', '', { key: 'k1' }), layer('qcow2', '/srv/a.qcow2', { compress: 'zstd' })]);
    // The parsed dev_config itself is the top layer: the kernel's subtype.
    expect(parsed).toMatchObject({ handler: 'crypt', config: '', options: { key: 'k1' } });
    expect(subtypeOf('crypt/;key=k1>qcow2//srv/a.qcow2')).toBe('crypt');
    expect(parseDevConfig('a/>b/>c//x').layers.map((l) => l.handler)).toEqual(['a', 'b', 'c']);
  });

  it('gives each layer the options that follow it', () => {
    const { layers } = parseDevConfig('crypt/;key=k1;allow_discards=1>qcow2//a.qcow2;key=k2');
    expect(layers[0]!.options).toEqual({ key: 'k1', allow_discards: '1' });
    expect(layers[1]!.options).toEqual({ key: 'k2' }); // the same key in two layers is two options
  });

  it.each([
    ['crypt/;key=k1>file//srv/a;b=>c', /layer 2 of 3, handler "file": option "b=" has no '='|layer 3 of 3 \(bottom\) "c" has no '\/'/],
    ['crypt/;key>file//a', /dev_config "crypt\/;key>file\/\/a": layer 1 of 2 \(top\), handler "crypt": option "key" has no '='/],
    ['crypt/;key=1>file//a;Bad=1', /layer 2 of 2 \(bottom\), handler "file": option key "Bad" is invalid/],
    ['crypt/;key=1>file//a;x=1;x=2', /layer 2 of 2 \(bottom\), handler "file": option "x" is given twice/],
    ['crypt/>File//a', /layer 2 of 2 \(bottom\): handler name "File" is invalid/],
    ['crypt/>>file//a', /layer 2 of 3 is empty/],
    ['crypt/>', /layer 2 of 2 \(bottom\) is empty/],
    ['>file//a', /layer 1 of 2 \(top\) is empty/],
    ['file//srv/a>b.img', /layer 2 of 2 \(bottom\) "b.img" has no '\/'.*'>' separates stack layers, so a path or option value cannot contain it/],
    [Array(MAX_STACK_LAYERS + 1).fill('p/').join('>'), /has 9 layers; at most 8 are allowed/],
  ])('names the layer and the key: %j', (input, message) => {
    let caught: unknown;
    try {
      parseDevConfig(input);
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect((caught as Error).message).toMatch(message);
  });

  it('formats top first and refuses what it could not parse back, naming the layer and the key', () => {
    expect(formatDevStack([layer('crypt', '', { key: 'k1' }), layer('file', '/srv/a.img')])).toBe('crypt/;key=k1>file//srv/a.img');
    expect(() => formatDevStack([layer('crypt', ''), layer('file', '/srv/a>b.img')])).toThrow(
      'dev_config layer 2 of 2 (bottom), handler "file": config "/srv/a>b.img" contains \'>\', which dev_config cannot carry',
    );
    expect(() => formatDevStack([layer('crypt', '', { key: 'a>b' }), layer('file', '/a')])).toThrow(
      'dev_config layer 1 of 2 (top), handler "crypt": option key="a>b" contains \'>\'',
    );
    expect(() => formatDevStack([layer('crypt', '', { 'Bad Key': '1' }), layer('file', '/a')])).toThrow(/layer 1 of 2 \(top\), handler "crypt": option key "Bad Key" is invalid/);
    expect(() => formatDevStack([layer('crypt', ''), layer('Nope', '/a')])).toThrow(/layer 2 of 2 \(bottom\), handler "Nope": handler name is invalid/);
    expect(() => formatDevStack([])).toThrow(/at least one layer/);
    expect(() => formatDevStack(Array(MAX_STACK_LAYERS + 1).fill(layer('p', '')))).toThrow(/at most 8/);
    expect(() => formatDevStack([layer('crypt', ''), layer('file', `/${'x'.repeat(250)}`)])).toThrow(/allows at most 255/);
  });

  it("fits targetcli's cfgstring: the part after <subtype>/ uses only characters its shell accepts, and no ':'", () => {
    // configshell's parameter grammar (a word of these characters), and rtslib refuses ':' in a user backstore's config.
    const TARGETCLI_WORD = /^[A-Za-z0-9?;&*$!#,=_\\+/.<>()~@%[\]-]+$/;
    for (const stack of ['crypt/;key=k1>file//srv/a.img', 'crypt/;key=k1>qcow2//srv/a.qcow2;compress=zstd', 'example-passthrough/>file//var/lib/tcmu-ts/a.img']) {
      const cfgstring = stack.slice(stack.indexOf('/') + 1);
      expect(cfgstring).toMatch(TARGETCLI_WORD);
      expect(cfgstring).not.toContain(':');
      expect(formatDevStack(parseDevConfig(stack).layers)).toBe(stack);
    }
  });
});

describe('formatDevConfig (one layer)', () => {
  it('is the inverse of parseDevConfig', () => {
    const text = formatDevConfig('file', '/var/lib/lun.img', { create: '1', extend: 'true' });
    expect(text).toBe('file//var/lib/lun.img;create=1;extend=true');
    expect(parseDevConfig(text)).toMatchObject({ handler: 'file', config: '/var/lib/lun.img', options: { create: '1', extend: 'true' } });
    expect(formatDevConfig('ram', '')).toBe('ram/');
  });

  it('refuses what could not be parsed back', () => {
    expect(() => formatDevConfig('file', '/a;b')).toThrow(/config "\/a;b" contains ';'/);
    expect(() => formatDevConfig('file', '/a\nb')).toThrow(/config "\/a\nb" contains the control character U\+000A/);
    expect(() => formatDevConfig('file', '/a', { k: 'x,y' })).toThrow(/option k="x,y" contains ','/);
    expect(() => formatDevConfig('file', '/a', { 'Bad Key': '1' })).toThrow(/option key "Bad Key" is invalid/);
    expect(() => formatDevConfig('Nope', '/a')).toThrow(/handler name is invalid/);
    expect(() => formatDevConfig('file', `/${'x'.repeat(260)}`)).toThrow(/allows at most 255/);
  });
});

/**
 * Round-trip properties over seeded random stacks (replayable: the case
 * index is the seed). Generators mix valid pieces with every separator and
 * forbidden character, so both directions see accepted and refused input.
 */
describe('round trip (property)', () => {
  const HANDLERS = ['file', 'qcow2', 'crypt', 'ram', 'example-passthrough', 'a', 'x_1', 'File', '', '9lives', 'r-b'];
  const KEYS = ['key', 'create', 'compress', 'allow_discards', 'size', 'x-y', 'Key', '', '1a', 'constructor', '__proto__'];
  const PIECES = ['/', '/srv', '/a.img', 'b', ' ', ':', '=', '.', '-', '~', 'é', '>', ';', ',', '\n', '\t', 'k1', 'zstd', '1.5G', '..'];

  const text = (rng: Rng, max: number) => Array.from({ length: rng.below(max) }, () => rng.pick(PIECES)).join('');
  const randomLayers = (rng: Rng): DevLayer[] =>
    Array.from({ length: rng.between(1, 4) }, () => {
      const options: Record<string, string> = {};
      for (let i = rng.below(3); i > 0; i--) options[rng.pick(KEYS)] = text(rng, 4);
      return layer(rng.pick(HANDLERS), text(rng, 6), options);
    });

  /** What formatDevStack must accept, decided independently of its code. */
  const representable = (layers: DevLayer[]) => {
    const clean = (s: string) => !/[,;>\u0000-\u001f\u007f]/.test(s);
    return layers.every(
      (l) =>
        /^[a-z0-9][a-z0-9_-]*$/.test(l.handler) &&
        clean(l.config) &&
        Object.entries(l.options).every(([k, v]) => /^[a-z][a-z0-9_-]*$/.test(k) && clean(v)),
    );
  };

  it('parse(format(layers)) gives the layers back, and format refuses exactly what cannot be carried', () => {
    let accepted = 0;
    let refused = 0;
    for (let seed = 0; seed < 3000; seed++) {
      const rng = new Rng(seed);
      const layers = randomLayers(rng);
      let formatted: string | undefined;
      try {
        formatted = formatDevStack(layers);
      } catch (err) {
        expect(err, `seed ${seed}`).toBeInstanceOf(ConfigError);
      }
      const length = layers
        .map((l) => l.handler.length + 1 + l.config.length + Object.entries(l.options).reduce((n, [k, v]) => n + k.length + v.length + 2, 0))
        .reduce((a, b) => a + b + 1, -1);
      expect(formatted !== undefined, `seed ${seed}: ${JSON.stringify(layers)}`).toBe(representable(layers) && length <= DEV_CONFIG_MAX_LENGTH);
      if (formatted === undefined) {
        refused++;
        continue;
      }
      accepted++;
      expect(parseDevConfig(formatted).layers, `seed ${seed}`).toEqual(layers);
      expect(formatted).toHaveLength(length);
      expect(formatted).not.toContain(',');
    }
    // Both outcomes must really occur, or the property says nothing.
    expect(accepted).toBeGreaterThan(200);
    expect(refused).toBeGreaterThan(200);
  });

  it('format(parse(text)) gives the text back for every text parse accepts', () => {
    let accepted = 0;
    for (let seed = 0; seed < 3000; seed++) {
      const rng = new Rng(seed, 1);
      const candidate = Array.from({ length: rng.between(1, 12) }, () =>
        rng.pick(['file/', 'crypt/', 'qcow2/', 'ram/', '/srv/a.img', ';key=k1', ';create=1', ';x=', '>', ';', '=', ',', 'Q', ' ', ':']),
      ).join('');
      let layers: DevLayer[];
      try {
        layers = parseDevConfig(candidate).layers;
      } catch (err) {
        expect(err, `seed ${seed}: ${candidate}`).toBeInstanceOf(ConfigError);
        continue;
      }
      accepted++;
      expect(formatDevStack(layers), `seed ${seed}`).toBe(candidate);
    }
    expect(accepted).toBeGreaterThan(200);
  });
});
