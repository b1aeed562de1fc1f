import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  builtinHandlerNames,
  openDevConfig,
  openStack,
  registerHandler,
  registerUserHandler,
  resolveHandler,
} from '../../src/backstore/registry.js';
import type { Backstore, Handler } from '../../src/backstore/types.js';
import { silentLog } from './context.js';

const dir = mkdtempSync(join(tmpdir(), 'tcmu-registry-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeModule(name: string, source: string): string {
  const path = join(dir, name);
  writeFileSync(path, source);
  return path;
}

const base = { size: 1 << 20, blockSize: 512, readOnly: false, log: silentLog };

const tinyHandlerSource = (exportLine: string) => `
const h = {
  name: 'tiny',
  open(config, ctx) {
    const data = Buffer.alloc(ctx.size ?? 4096, config.length ? config.charCodeAt(0) : 0);
    return {
      size: data.length, blockSize: ctx.blockSize, options: ctx.options,
      read(offset, iov) { for (const b of iov) offset += data.copy(b, 0, offset, offset + b.length); },
      close() {},
    };
  },
};
${exportLine}
`;

describe('built-in handlers', () => {
  it('lists handler directories that have an index, not example-*', () => {
    const names = builtinHandlerNames();
    expect(names).toContain('file');
    expect(names).toContain('ram');
    expect(names).not.toContain('example-passthrough');
  });

  it('opens the ram built-in from a dev_config and applies options', async () => {
    const lun = await openDevConfig('ram/;size=1M', { ...base, size: undefined });
    expect(lun.size).toBe(1 << 20);
    expect(lun.readOnly).toBe(false);
    expect(lun.thin).toBe(true);
    lun.write(4096, [Buffer.from('hello')], { fua: false });
    const out = Buffer.alloc(5);
    lun.read(4096, [out]);
    expect(out.toString()).toBe('hello');
    await lun.close();
  });

  it('refuses an unknown handler with a clear message', async () => {
    await expect(openDevConfig('nosuchhandler/x', base)).rejects.toThrow(
      /unknown handler "nosuchhandler": not registered and no built-in handlers\/nosuchhandler \(built-ins: .*file.*ram/,
    );
    await expect(openStack([{ handler: 'nosuchhandler', config: '' }], base)).rejects.toThrow(
      /unknown handler "nosuchhandler": no built-in handlers\/nosuchhandler, and no module or package of that name/,
    );
    // dev_config names never import packages, even installed ones.
    await expect(openDevConfig('pino/', base)).rejects.toThrow('unknown handler "pino": not registered');
  });

  it('passes handler option errors through, naming the key', async () => {
    await expect(openDevConfig('ram/;sise=1M', base)).rejects.toThrow('ram: unknown option "sise" (allowed: size)');
  });
});

describe('user handler modules', () => {
  it('loads a default export from a module path', async () => {
    const path = writeModule('default-export.mjs', tinyHandlerSource('export default h;'));
    const store = await openStack([{ handler: path, config: 'A', options: { k: 'v' } }], { ...base, size: 4096 });
    const out = Buffer.alloc(4);
    await store.read(0, [out]);
    expect(out.toString()).toBe('AAAA');
    expect({ ...(store as unknown as { options: object }).options }).toEqual({ k: 'v' });
  });

  it('loads a named export "handler"', async () => {
    const path = writeModule('named-export.mjs', tinyHandlerSource('export { h as handler };'));
    expect((await resolveHandler(path)).name).toBe('tiny');
  });

  it('maps a subtype to a module with registerUserHandler', async () => {
    const path = writeModule('mapped.mjs', tinyHandlerSource('export default h;'));
    registerUserHandler('mytiny', path);
    const lun = await openDevConfig('mytiny/B', { ...base, size: 1024 });
    const out = Buffer.alloc(2);
    lun.read(0, [out]);
    expect(out.toString()).toBe('BB');
    expect(lun.readOnly).toBe(true);
    expect(() => registerUserHandler('mytiny', '/elsewhere.mjs')).toThrow(/already registered from/);
    expect(() => registerUserHandler('Bad Name', path)).toThrow(/handler name "Bad Name" is invalid/);
  });

  it.each([
    ['no-export.mjs', 'export const other = 1;', /exports neither a default handler nor a named export "handler"/],
    ['no-name.mjs', 'export default { open() {} };', /\(default export\): the handler has no "name"/],
    ['no-open.mjs', "export default { name: 'x' };", /\(default export\): handler "x" has no "open" function/],
    ['not-object.mjs', 'export const handler = 42;', /\(export "handler"\): the handler export is number/],
    ['bad-layer.mjs', "export default { name: 'x', open() {}, layer: 'yes' };", /non-boolean "layer"/],
  ])('refuses a module with a bad export (%s)', async (file, source, message) => {
    const path = writeModule(file, source);
    const error = resolveHandler(path);
    await expect(error).rejects.toThrow(message);
    await expect(error).rejects.toThrow(`handler module "${path}"`);
  });

  it('reports a module that fails to load, not "unknown handler"', async () => {
    const path = writeModule('broken-import.mjs', "import './does-not-exist.mjs'; export default {};");
    await expect(resolveHandler(path)).rejects.toThrow(/handler module ".*broken-import.mjs": failed to load/);
  });

  it('refuses a missing module file as unknown', async () => {
    await expect(resolveHandler(join(dir, 'missing.mjs'))).rejects.toThrow(/unknown handler ".*missing.mjs"/);
  });

  it('validates what open() returns', async () => {
    registerHandler({ name: 'badsize', open: () => ({ size: 1000, blockSize: 512, read() {}, close() {} }) });
    registerHandler({ name: 'noread', open: () => ({ size: 512, blockSize: 512, close() {} }) as unknown as Backstore });
    await expect(openDevConfig('badsize/', base)).rejects.toThrow('handler "badsize" returned an invalid backstore: size 1000 is not a multiple of blockSize 512');
    await expect(openDevConfig('noread/', base)).rejects.toThrow('"read" is required and must be a function');
  });

  it.each([
    ['baddecl-zero', { maxInFlight: 0 }, '"maxInFlight" must be a positive integer or absent, got 0'],
    ['baddecl-half', { maxInFlight: 1.5 }, '"maxInFlight" must be a positive integer or absent, got 1.5'],
    ['baddecl-abort', { abortable: 'yes' }, '"abortable" must be a boolean or absent, got string'],
    ['baddecl-gran-small', { discardGranularity: 512 }, '"discardGranularity" must be a power of two from 4096 to 1 GiB or absent, got 512'],
    ['baddecl-gran-odd', { discardGranularity: 12288 }, '"discardGranularity" must be a power of two from 4096 to 1 GiB or absent, got 12288'],
  ])('refuses a bad declaration (%s) naming the handler', async (name, declaration, message) => {
    registerHandler({ name, open: () => ({ size: 512, blockSize: 512, read() {}, close() {}, ...declaration }) as Backstore });
    await expect(openDevConfig(`${name}/`, base)).rejects.toThrow(`handler "${name}" returned an invalid backstore: ${message}`);
  });
});

describe('openStack', () => {
  function recorder(name: string, log: string[], layer = false): Handler {
    return {
      name,
      layer,
      open(config, ctx) {
        log.push(`open ${name} size=${ctx.size} lower=${ctx.lower ? 'yes' : 'no'}`);
        if (config === 'fail') throw new Error(`${name} failed`);
        const lower = ctx.lower;
        return {
          size: lower?.size ?? ctx.size ?? 4096,
          blockSize: 512,
          read: (offset, iov) => (lower ? lower.read(offset, iov) : iov.forEach((b) => b.fill(name.charCodeAt(0)))),
          close: () => void log.push(`close ${name}`),
        };
      },
    };
  }

  it('opens bottom-up, gives only the top the LUN size, and closes top first', async () => {
    const log: string[] = [];
    registerHandler(recorder('bottom', log));
    registerHandler(recorder('middle', log, true));
    registerHandler(recorder('top', log, true));
    const store = await openStack(
      [
        { handler: 'bottom', config: '' },
        { handler: 'middle', config: '' },
        { handler: 'top', config: '' },
      ],
      { ...base, size: 8192 },
    );
    const out = Buffer.alloc(3);
    store.read(0, [out]);
    expect(out.toString()).toBe('bbb');
    await store.close();
    expect(log).toEqual([
      'open bottom size=undefined lower=no',
      'open middle size=undefined lower=yes',
      'open top size=8192 lower=yes',
      'close top',
      'close middle',
      'close bottom',
    ]);
  });

  it('closes the already opened layers when a layer fails to open', async () => {
    const log: string[] = [];
    registerHandler(recorder('b2', log));
    registerHandler(recorder('t2', log, true));
    await expect(openStack([{ handler: 'b2', config: '' }, { handler: 't2', config: 'fail' }], base)).rejects.toThrow('t2 failed');
    expect(log).toEqual(['open b2 size=undefined lower=no', 'open t2 size=1048576 lower=yes', 'close b2']);
  });

  it('refuses a layer at the bottom and a non-layer on top', async () => {
    await expect(openStack([{ handler: 'example-passthrough', config: '' }], base)).rejects.toThrow(
      'handler "example-passthrough" is a layer and needs a store below it',
    );
    await expect(openStack([{ handler: 'ram', config: '' }, { handler: 'ram', config: '' }], base)).rejects.toThrow(
      'handler "ram" is not a layer and cannot sit on top of "ram"',
    );
    await expect(openStack([], base)).rejects.toThrow('no layers');
  });

  it('runs example-passthrough over ram with the same behaviour and capabilities', async () => {
    const { toLunStore } = await import('../../src/backstore/lun-store.js');
    const lun = toLunStore(
      await openStack(
        [
          { handler: 'ram', config: '', options: { size: '2M' } },
          { handler: 'example-passthrough', config: '' },
        ],
        { ...base, size: undefined },
      ),
    );
    expect(lun.size).toBe(2 << 20);
    expect(lun.thin).toBe(true);
    expect(lun.hasBlockStatus).toBe(true);
    expect(lun.write(1 << 20, [Buffer.alloc(512, 7)], { fua: true })).toBeUndefined(); // still synchronous
    const out = Buffer.alloc(512);
    lun.read(1 << 20, [out]);
    expect(out.every((b) => b === 7)).toBe(true);
    expect(lun.blockStatus(0, 2 << 20)).toEqual([
      { offset: 0, length: 1 << 20, state: 'deallocated' },
      { offset: 1 << 20, length: 1 << 20, state: 'mapped' },
    ]);
    await lun.resize(4 << 20);
    expect(lun.size).toBe(4 << 20);
    await lun.close();
  });
});

describe('stacks written as a dev_config (top first)', () => {
  it('opens example-passthrough over ram from one string, with the layer options where they were written', async () => {
    const lun = await openDevConfig('example-passthrough/>ram/;size=2M', { ...base, size: undefined });
    expect(lun.size).toBe(2 << 20);
    expect(lun.thin).toBe(true);
    lun.write(4096, [Buffer.from('stacked')], { fua: true });
    const out = Buffer.alloc(7);
    lun.read(4096, [out]);
    expect(out.toString()).toBe('stacked');
    await lun.close();
  });

  it('hands every layer a lower store normalised by the core: all methods present, capabilities decided', async () => {
    const seen: Record<string, unknown>[] = [];
    registerHandler({
      name: 'read-only-bottom',
      open: (_config, ctx) => ({
        size: 8192,
        blockSize: ctx.blockSize,
        read: (_offset, iov) => iov.forEach((b) => b.fill(0x61)),
        close: () => {},
      }),
    });
    registerHandler({
      name: 'inspecting-layer',
      layer: true,
      open(_config, ctx) {
        const lower = ctx.lower!;
        seen.push({
          methods: ['read', 'write', 'flush', 'discard', 'writeZeroes', 'blockStatus', 'resize', 'close'].filter(
            (m) => typeof (lower as unknown as Record<string, unknown>)[m] === 'function',
          ).length,
          readOnly: lower.readOnly,
          writeCache: lower.writeCache,
          thin: lower.thin,
          hasBlockStatus: lower.hasBlockStatus,
        });
        return { size: lower.size, blockSize: lower.blockSize, readOnly: lower.readOnly, read: (o, iov) => lower.read(o, iov), close: () => {} };
      },
    });
    const lun = await openDevConfig('inspecting-layer/>inspecting-layer/>read-only-bottom/', { ...base, size: undefined });
    // Both layers saw a complete LunStore: a read-only bottom with only read/close becomes
    // one whose write refuses with EROFS instead of a missing method.
    expect(seen).toEqual([
      { methods: 8, readOnly: true, writeCache: false, thin: false, hasBlockStatus: false },
      { methods: 8, readOnly: true, writeCache: false, thin: false, hasBlockStatus: false },
    ]);
    expect(() => lun.write(0, [Buffer.alloc(512)], { fua: false })).toThrow(expect.objectContaining({ code: 'EROFS' }));
    await lun.close();
  });

  it('a FUA write through a layer reaches the store below as write + flush when that store needs it', async () => {
    const calls: string[] = [];
    registerHandler({
      name: 'cached-bottom',
      open: (_config, ctx) => ({
        size: 8192,
        blockSize: ctx.blockSize,
        read: () => {},
        write: (_o, _iov, opts) => void calls.push(`write fua=${opts.fua}`),
        flush: () => void calls.push('flush'),
        close: () => {},
      }),
    });
    const lun = await openDevConfig('example-passthrough/>cached-bottom/', { ...base, size: undefined });
    lun.write(0, [Buffer.alloc(512)], { fua: true });
    lun.write(512, [Buffer.alloc(512)], { fua: false });
    // One flush for the FUA write, added once by the core below the layer (the layer declares fua), none for the other.
    expect(calls).toEqual(['write fua=true', 'flush', 'write fua=false']);
    await lun.close();
  });

  it('names the layer (position from the top, handler) in errors from resolving and opening', async () => {
    await expect(openDevConfig('nosuchlayer/;key=k1>ram/;size=1M', base)).rejects.toThrow(
      /^layer 1 of 2 \(top\), handler "nosuchlayer": unknown handler "nosuchlayer"/,
    );
    await expect(openDevConfig('example-passthrough/>ram/;sise=1M', base)).rejects.toThrow(
      'layer 2 of 2 (bottom), handler "ram": ram: unknown option "sise" (allowed: size)',
    );
    await expect(openDevConfig('example-passthrough/;x=1>ram/;size=1M', base)).rejects.toThrow(
      'layer 1 of 2 (top), handler "example-passthrough": example-passthrough: unknown option "x" (allowed: none)',
    );
    await expect(openDevConfig('example-passthrough/>ram/;size=1M;size=2M', base)).rejects.toThrow(
      'layer 2 of 2 (bottom), handler "ram": option "size" is given twice',
    );
  });

  it('keeps the class and code of an error it re-names (the daemon answers the kernel with its errno)', async () => {
    registerHandler({
      name: 'denied-bottom',
      open: () => {
        throw Object.assign(new Error('/srv/x.img is outside the allowed directories'), { code: 'EACCES' });
      },
    });
    const err = await openDevConfig('example-passthrough/>denied-bottom/', base).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'EACCES', message: 'layer 2 of 2 (bottom), handler "denied-bottom": /srv/x.img is outside the allowed directories' });
    const { ConfigError } = await import('../../src/backstore/config-error.js');
    expect(await openDevConfig('example-passthrough/>ram/;sise=1', base).catch((e: unknown) => e)).toBeInstanceOf(ConfigError);
  });

  it('a stack naming a handler that does not exist fails with the normal unknown-handler error, naming the layer', async () => {
    await expect(openDevConfig('no-such-layer/;key=k1>ram/;size=1M', base)).rejects.toThrow(/handler "no-such-layer": unknown handler "no-such-layer"/);
  });
});

describe('stack shape errors name the layer as written', () => {
  it('a layer at the bottom, a store on top', async () => {
    await expect(openDevConfig('ram/;size=1M>example-passthrough/', base)).rejects.toThrow(
      'layer 2 of 2 (bottom), handler "example-passthrough": handler "example-passthrough" is a layer and needs a store below it',
    );
    await expect(openDevConfig('ram/>ram/;size=1M', base)).rejects.toThrow(
      'layer 1 of 2 (top), handler "ram": handler "ram" is not a layer and cannot sit on top of "ram"',
    );
  });
});
