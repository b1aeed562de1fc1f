/**
 * The control-surface contract in the core: declarations checked when a
 * handler is registered or loaded, arguments checked and converted before
 * an operation runs, and the lookups that pick the handler for an offline
 * operation and the layer of a stack for an online one.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { coerceControlArgs, validateControl } from '../../src/backstore/control.js';
import { layerOperation, offeredOperations, offlineOperation } from '../../src/backstore/control-registry.js';
import { layersOfDevConfig, registerHandler } from '../../src/backstore/registry.js';
import type { ControlOperation, Handler, HandlerControl } from '../../src/backstore/types.js';

const dir = mkdtempSync(join(tmpdir(), 'tcmu-control-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const echo = (description = 'echo the arguments'): ControlOperation => ({
  description,
  modes: ['offline', 'online'],
  args: [
    { name: 'name', type: 'string', positional: true, description: 'a name' },
    { name: 'size', type: 'size', default: '64k', description: 'a size' },
    { name: 'count', type: 'integer', description: 'a count' },
    { name: 'fast', type: 'boolean', description: 'a flag' },
    { name: 'mode', type: 'string', choices: ['a', 'b'], description: 'a choice' },
  ],
  async run(ctx, args) {
    return { value: { config: ctx.config, mode: ctx.mode, args: { ...args } } };
  },
});

const noStore = () => {
  throw new Error('these test handlers are never opened');
};

describe('validateControl', () => {
  const ok: HandlerControl = { operations: { 'snapshot.create': echo() } };
  const refused: Array<[string, unknown, RegExp]> = [
    ['not an object', 42, /must be an object/],
    ['no operations', {}, /"control.operations" must be an object/],
    ['a name without a verb', { operations: { snapshot: echo() } }, /"snapshot" is invalid \(expected <group>\.<verb>/],
    ['an upper-case name', { operations: { 'Image.info': echo() } }, /"Image.info" is invalid/],
    ['a group that is a tcmu-ts command', { operations: { 'lun.create': echo() } }, /group "lun" is a tcmu-ts command/],
    ['no run', { operations: { 'image.info': { description: 'x', modes: ['offline'] } } }, /"image.info": no "run" function/],
    ['no modes', { operations: { 'image.info': { ...echo(), modes: [] } } }, /"modes" must list/],
    ['an unknown mode', { operations: { 'image.info': { ...echo(), modes: ['remote'] } } }, /"modes" must list/],
    ['a non-boolean quiesce', { operations: { 'image.info': { ...echo(), quiesce: 'no' } } }, /"quiesce" must be a boolean/],
    ['an argument named like a CLI option', { operations: { 'image.info': { ...echo(), args: [{ name: 'format', type: 'string', description: 'x' }] } } }, /argument "format": the name is reserved/],
    ['an argument declared twice', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'string', description: 'x' }, { name: 'a', type: 'size', description: 'y' }] } } }, /argument "a": declared twice/],
    ['an unknown type', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'path', description: 'x' }] } } }, /"type" must be one of/],
    ['a positional after an option', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'string', description: 'x' }, { name: 'b', type: 'string', positional: true, description: 'y' }] } } }, /positional argument "b" follows an option/],
    ['a default that is not a size', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'size', default: 'big', description: 'x' }] } } }, /"big" is not a size/],
    ['a default outside the choices', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'string', choices: ['x'], default: 'y', description: 'x' }] } } }, /"y" is not one of x/],
    ['choices on a size', { operations: { 'image.info': { ...echo(), args: [{ name: 'a', type: 'size', choices: ['1'], description: 'x' }] } } }, /"choices" only applies to type string/],
    ['a probe that is not a function', { operations: {}, probe: true }, /"control.probe" must be a function/],
  ];

  it('accepts a well-formed surface', () => {
    expect(validateControl(ok, 'test')).toBe(ok);
  });

  it.each(refused)('refuses %s, naming the handler and the operation', (_what, control, message) => {
    expect(() => validateControl(control, 'handler "x"')).toThrow(message);
    expect(() => validateControl(control, 'handler "x"')).toThrow(/^handler "x"/);
  });

  it('is applied when a handler is registered', () => {
    const bad = { name: 'badcontrol', open: noStore, control: { operations: { 'image.x': { description: 'x', modes: ['offline'] } } } };
    expect(() => registerHandler(bad as unknown as Handler)).toThrow(/handler "badcontrol": control operation "image.x": no "run" function/);
  });
});

describe('coerceControlArgs', () => {
  const op = echo();

  it('converts sizes and integers, fills defaults, turns absent flags to false', () => {
    expect({ ...coerceControlArgs(op, { name: 'n', count: '12', mode: 'b' }) }).toEqual({ name: 'n', size: 65536, count: 12, fast: false, mode: 'b' });
    expect({ ...coerceControlArgs(op, { name: 'n', size: '1.5M', fast: 'true', count: 3 }) }).toMatchObject({ size: 1.5 * 2 ** 20, fast: true, count: 3 });
  });

  it('refuses what does not fit, naming the argument as the caller spells it', () => {
    const cli = (arg: { name: string; positional?: boolean }) => (arg.positional ? `<${arg.name}>` : `--${arg.name}`);
    expect(() => coerceControlArgs(op, {}, cli)).toThrow(/<name> is required \(a name\)/);
    expect(() => coerceControlArgs(op, { name: 'n', size: 'huge' }, cli)).toThrow(/--size: "huge" is not a size/);
    expect(() => coerceControlArgs(op, { name: 'n', count: '1e3' }, cli)).toThrow(/--count: expected an integer/);
    expect(() => coerceControlArgs(op, { name: 'n', mode: 'c' }, cli)).toThrow(/--mode: "c" is not one of a, b/);
    expect(() => coerceControlArgs(op, { name: 'n', fast: 'maybe' })).toThrow(/fast: expected true or false/);
    expect(() => coerceControlArgs(op, { name: 7 })).toThrow(/name: expected a string, got number/);
    expect(() => coerceControlArgs(op, { name: 'n', extra: '1' })).toThrow(/unknown argument "extra" \(this operation takes: name, size, count, fast, mode\)/);
    expect(() => coerceControlArgs(op, JSON.parse('{"name":"n","__proto__":{"x":1}}'))).toThrow(/unknown argument "__proto__"/);
  });
});

// Two handlers that offer the same offline operation; only one recognises an image starting with "AAAA".
const probeHandler = (name: string, claims: (head: string) => boolean): Handler => ({
  name,
  open: noStore,
  control: {
    operations: { 'image.testinfo': echo(`${name} info`) },
    async probe(path, files) {
      const fh = await files.openHandle(path);
      try {
        const head = Buffer.alloc(4);
        await fh.read(head, 0, 4, 0);
        return claims(head.toString('latin1'));
      } finally {
        await fh.close();
      }
    },
  },
});
registerHandler(probeHandler('tst-a', (head) => head === 'AAAA'));
registerHandler(probeHandler('tst-b', () => false));

describe('offlineOperation', () => {
  const aImage = join(dir, 'a.img');
  const other = join(dir, 'other.img');
  writeFileSync(aImage, 'AAAA and more');
  writeFileSync(other, 'ZZZZ');

  it('lists what every handler offers, built-ins included', async () => {
    const offers = await offeredOperations();
    const names = offers.map((o) => `${o.handlerName}:${o.name}`);
    expect(names).toContain('qcow2:snapshot.create');
    expect(names).toContain('tst-a:image.testinfo');
    expect(names).toContain('tst-b:image.testinfo');
    expect(offers.every((o) => `${o.group}.${o.verb}` === o.name)).toBe(true);
  });

  it('takes --format, else the handler whose probe claims the image, else the fallback', async () => {
    expect((await offlineOperation('image.testinfo', { format: 'tst-b', path: aImage })).handlerName).toBe('tst-b');
    expect((await offlineOperation('image.testinfo', { path: aImage })).handlerName).toBe('tst-a');
    expect((await offlineOperation('image.testinfo', { path: other, fallback: 'tst-b' })).handlerName).toBe('tst-b');
    // The only handler offering an operation needs no choice.
    expect((await offlineOperation('snapshot.revert', { path: other })).handlerName).toBe('qcow2');
  });

  it('says what to do when it cannot choose', async () => {
    await expect(offlineOperation('image.testinfo', { path: other })).rejects.toThrow(
      /several handlers offer image testinfo \(tst-a, tst-b\) and none alone recognises .*other.img: choose one with --format/,
    );
    await expect(offlineOperation('image.testinfo', { format: 'ram', path: other })).rejects.toThrow(/handler "ram" offers no image testinfo on an image path \(offered by: tst-a, tst-b\)/);
    await expect(offlineOperation('image.testinfo', { format: 'nosuch', path: other })).rejects.toThrow(/unknown handler "nosuch"/);
    await expect(offlineOperation('image.nothing', { path: other })).rejects.toThrow(/no handler offers image nothing on an image path/);
  });
});

describe('layerOperation: the layer of a served stack that offers an operation', () => {
  // A layer (like crypt) that sits over qcow2 and offers no snapshot operations of its own.
  registerHandler({ name: 'tst-layer', layer: true, open: noStore });
  // A layer that offers its own 'image.testinfo', on served LUNs only.
  registerHandler({ name: 'tst-infolayer', layer: true, open: noStore, control: { operations: { 'image.testinfo': { ...echo('layer info'), modes: ['online'] } } } });
  const qcow2Layer = { handler: 'qcow2', config: '/srv/a.qcow2', options: { ro: '0' } };

  it('finds the qcow2 layer under a layer that does not offer it', async () => {
    const found = await layerOperation([qcow2Layer, { handler: 'tst-layer', config: '', options: {} }], 'snapshot.create', 'LUN x');
    expect(found.index).toBe(0);
    expect(found.layer).toBe(qcow2Layer);
    expect(found.handler.name).toBe('qcow2');
    expect(found.operation.modes).toContain('online');
  });

  it('searches from the top: the upper layer wins when both offer it', async () => {
    const stack = [{ handler: 'tst-a', config: '/srv/b.img', options: {} }, { handler: 'tst-infolayer', config: 'k', options: {} }];
    const found = await layerOperation(stack, 'image.testinfo', 'LUN x');
    expect(found.index).toBe(1);
    expect(await found.operation.run({ mode: 'online', config: found.layer.config, options: {}, log: undefined as never }, {})).toMatchObject({ value: { config: 'k' } });
  });

  it('names the LUN, its stack and who offers the operation when no layer does', async () => {
    await expect(layerOperation(layersOfDevConfig('file//srv/a.img'), 'snapshot.create', 'LUN web')).rejects.toThrow(
      'LUN web (file): no layer offers snapshot create on a served LUN (offered by: qcow2, rbd)',
    );
    await expect(layerOperation([{ handler: 'ram', config: '' }, { handler: 'tst-layer', config: '' }], 'snapshot.nope', 'LUN web')).rejects.toThrow(
      'LUN web (tst-layer over ram): no layer offers snapshot nope on a served LUN (offered by: none)',
    );
  });

  it('layersOfDevConfig is what a LUN opens', () => {
    expect(layersOfDevConfig('qcow2//srv/a.qcow2;ro=1')).toEqual([{ handler: 'qcow2', config: '/srv/a.qcow2', options: { ro: '1' } }]);
  });
});
