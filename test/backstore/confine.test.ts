/**
 * Path confinement on the opened fd (src/backstore/confine.ts over
 * native/open_beneath.cc), for every kind of file a handler opens: images,
 * qcow2 backing files, user handler modules. Each case runs twice: with
 * openat2 (RESOLVE_BENEATH) and with the pre-5.6 fallback (O_PATH open,
 * /proc/self/fd check, reopen).
 */
import { execFileSync, spawn } from 'node:child_process';
import fs, { existsSync, mkdirSync, mkdtempSync, readFileSync, readlinkSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfinementError, createFileOpener, unconfinedOpener } from '../../src/backstore/confine.js';
import { loadHandlerModule } from '../../src/backstore/handler-loader.js';
import { openDevConfig } from '../../src/backstore/registry.js';
import { native } from '../../src/native.js';
import qcow2Handler from '../../handlers/qcow2/index.js';
import { qemuImgAvailable, qemuImgOk } from '../handlers/qcow2/qemu.js';
import { openContext, silentLog } from './context.js';

const root = realpathSync(mkdtempSync(join(tmpdir(), 'tcmu-confine-')));
const allowed = join(root, 'allowed');
const outside = join(root, 'outside');
mkdirSync(join(allowed, 'sub'), { recursive: true });
mkdirSync(outside);
writeFileSync(join(allowed, 'lun.img'), 'inside!!');
writeFileSync(join(allowed, 'sub', 'deep.img'), 'deep');
writeFileSync(join(outside, 'secret'), 'SECRET!!');
symlinkSync(join(outside, 'secret'), join(allowed, 'abs-escape.img'));
symlinkSync('../outside/secret', join(allowed, 'rel-escape.img'));
symlinkSync('lun.img', join(allowed, 'alias.img'));
symlinkSync('../lun.img', join(allowed, 'sub', 'up-alias.img'));
symlinkSync(outside, join(allowed, 'outdir'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

function readFd(fd: number): string {
  try {
    const buf = Buffer.alloc(64);
    return buf.subarray(0, fs.readSync(fd, buf, 0, 64, 0)).toString();
  } finally {
    fs.closeSync(fd);
  }
}

const refused = async (fn: () => Promise<unknown>) => {
  try {
    await fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfinementError);
    expect(err).toMatchObject({ code: 'EACCES' });
    expect((err as Error).message).toContain(allowed);
    return (err as Error).message;
  }
  throw new Error('expected the open to be refused');
};

for (const forceFallback of [false, true]) {
  describe(`confined open (${forceFallback ? 'pre-openat2 fallback' : 'openat2 RESOLVE_BENEATH'})`, () => {
    const files = createFileOpener([allowed], { forceFallback });

    it('opens files inside, including through symlinks that stay inside', async () => {
      expect(readFd(await files.openFd(join(allowed, 'lun.img')))).toBe('inside!!');
      expect(readFd(await files.openFd(join(allowed, 'sub', 'deep.img')))).toBe('deep');
      expect(readFd(await files.openFd(join(allowed, 'alias.img')))).toBe('inside!!');
      expect(readFd(await files.openFd(join(allowed, 'sub', 'up-alias.img')))).toBe('inside!!');
      expect(readFd(await files.openFd(join(allowed, 'sub', '..', 'lun.img')))).toBe('inside!!');
    });

    it('refuses a path outside, naming the path and the allowed directories', async () => {
      const message = await refused(() => files.openFd(join(outside, 'secret')));
      expect(message).toContain(join(outside, 'secret'));
      await refused(() => files.openFd('/etc/passwd'));
    });

    it('refuses a ".." escape', async () => {
      await refused(() => files.openFd(join(allowed, '..', 'outside', 'secret')));
      await refused(() => files.openFd(join(allowed, 'sub', '..', '..', 'outside', 'secret')));
    });

    it('refuses symlinks that lead out (absolute, relative, via a directory)', async () => {
      await refused(() => files.openFd(join(allowed, 'abs-escape.img')));
      await refused(() => files.openFd(join(allowed, 'rel-escape.img')));
      await refused(() => files.openFd(join(allowed, 'outdir', 'secret')));
    });

    it('refuses a /proc magic link even when the allowed directory is in /proc', async () => {
      const procFiles = createFileOpener(['/proc/self'], { forceFallback });
      await expect(procFiles.openFd('/proc/self/root/etc/passwd')).rejects.toBeInstanceOf(ConfinementError);
    });

    it('creates inside, and never creates through a directory symlink that leads out', async () => {
      const fd = await files.openFd(join(allowed, 'new.img'), { create: true });
      fs.closeSync(fd);
      expect(existsSync(join(allowed, 'new.img'))).toBe(true);
      fs.rmSync(join(allowed, 'new.img'));
      await refused(() => files.openFd(join(allowed, 'outdir', 'created.img'), { create: true }));
      expect(existsSync(join(outside, 'created.img'))).toBe(false);
    });

    it('removes a file only beneath the confined directory', async () => {
      writeFileSync(join(allowed, 'leftover.img'), 'x');
      await files.removeFile(join(allowed, 'leftover.img'));
      expect(existsSync(join(allowed, 'leftover.img'))).toBe(false);
      await files.removeFile(join(allowed, 'never-existed.img')); // like rm -f
      writeFileSync(join(outside, 'keep.img'), 'x');
      await refused(() => files.removeFile(join(allowed, 'outdir', 'keep.img')));
      await refused(() => files.removeFile(join(allowed, '..', 'outside', 'keep.img')));
      expect(existsSync(join(outside, 'keep.img'))).toBe(true);
    });

    it('never really opens a FIFO, a character device or a directory (refused from the O_PATH fd)', async () => {
      const fifo = join(allowed, `pipe-${forceFallback}`);
      if (!existsSync(fifo)) execFileSync('mkfifo', [fifo]);
      // Opening a FIFO for reading would block until a writer came: this returns at once.
      await expect(files.openFd(fifo)).rejects.toMatchObject({ code: 'EINVAL', message: /a FIFO, not a regular file/ });
      await expect(createFileOpener(['/dev'], { forceFallback }).openFd('/dev/null', { write: true })).rejects.toMatchObject({ code: 'EINVAL', message: /character device/ });
      await expect(files.openFd(join(allowed, 'sub'))).rejects.toMatchObject({ code: 'EISDIR' });
    });

    it('passes ordinary errors through with the path (ENOENT, EEXIST)', async () => {
      await expect(files.openFd(join(allowed, 'missing.img'))).rejects.toMatchObject({ code: 'ENOENT', path: join(allowed, 'missing.img') });
      await expect(files.openFd(join(allowed, 'lun.img'), { create: true })).rejects.toMatchObject({ code: 'EEXIST' });
    });

    it('gives FileHandles over exactly the confined file', async () => {
      const fh = await files.openHandle(join(allowed, 'alias.img'));
      try {
        const { bytesRead, buffer } = await fh.read(Buffer.alloc(8), 0, 8, 0);
        expect(buffer.subarray(0, bytesRead).toString()).toBe('inside!!');
      } finally {
        await fh.close();
      }
      await expect(files.openHandle(join(allowed, 'rel-escape.img'))).rejects.toBeInstanceOf(ConfinementError);
    });

    it('resolves relative names against a base directory, without lexical ".." shortcuts', async () => {
      expect(readFd(await files.openFd('deep.img', { relativeTo: join(allowed, 'sub') }))).toBe('deep');
      expect(readFd(await files.openFd('../lun.img', { relativeTo: join(allowed, 'sub') }))).toBe('inside!!');
      await refused(() => files.openFd('../../outside/secret', { relativeTo: join(allowed, 'sub') }));
      await expect(files.openFd('relative.img')).rejects.toMatchObject({ code: 'EINVAL' });
    });
  });
}

describe('native openBeneath, synchronous form (mechanism)', () => {
  it('refuses escapes with EXDEV and opens inside, with openat2 and with the fallback', () => {
    const n = native();
    const dirFd = fs.openSync(allowed, n.O_PATH | fs.constants.O_DIRECTORY);
    try {
      for (const fallback of [false, true]) {
        const resolve = n.RESOLVE_BENEATH | n.RESOLVE_NO_MAGICLINKS;
        expect(readFd(n.openBeneath(dirFd, 'alias.img', fs.constants.O_RDONLY, 0, resolve, fallback))).toBe('inside!!');
        expect(() => n.openBeneath(dirFd, 'rel-escape.img', fs.constants.O_RDONLY, 0, resolve, fallback)).toThrow(expect.objectContaining({ code: 'EXDEV' }));
        expect(() => n.openBeneath(dirFd, '../outside/secret', fs.constants.O_RDONLY, 0, resolve, fallback)).toThrow(expect.objectContaining({ code: 'EXDEV' }));
      }
      // The fallback cannot check RESOLVE_NO_SYMLINKS after the fact: it says so instead of ignoring it.
      expect(() => n.openBeneath(dirFd, 'lun.img', 0, 0, n.RESOLVE_BENEATH | n.RESOLVE_NO_SYMLINKS, true)).toThrow(expect.objectContaining({ code: 'ENOSYS' }));
      expect(() => n.openBeneath(dirFd, 'alias.img', 0, 0, n.RESOLVE_BENEATH | n.RESOLVE_NO_SYMLINKS, false)).toThrow(expect.objectContaining({ code: 'ELOOP' }));
    } finally {
      fs.closeSync(dirFd);
    }
  });
});

describe('no allowed directories: the same code path, unconfined', () => {
  it('opens anything, as before', async () => {
    expect(readFd(await unconfinedOpener.openFd(join(outside, 'secret')))).toBe('SECRET!!');
    expect(readFd(await createFileOpener([], { forceFallback: true }).openFd(join(allowed, 'abs-escape.img')))).toBe('SECRET!!');
  });
});

describe('a symlink swapped while opening cannot win', () => {
  it('every open either fails or yields a file inside', async () => {
    // A second process flips `swap` between an inside and an outside target
    // as fast as it can. A check-then-open would sometimes open the secret.
    const swap = join(allowed, 'swap.img');
    const script = `
      const fs = require('fs');
      const [swap, inside, outside] = process.argv.slice(1);
      const end = Date.now() + 1500;
      let i = 0;
      while (Date.now() < end) {
        const tmp = swap + '.tmp';
        try { fs.unlinkSync(tmp); } catch {}
        fs.symlinkSync(i++ % 2 ? outside : inside, tmp);
        fs.renameSync(tmp, swap);
      }`;
    symlinkSync('lun.img', swap);
    const flipper = spawn(process.execPath, ['-e', script, swap, 'lun.img', join(outside, 'secret')], { stdio: 'ignore' });
    const exited = new Promise((resolve) => flipper.on('exit', resolve));
    const files = createFileOpener([allowed]);
    let opened = 0;
    let refusedCount = 0;
    const deadline = Date.now() + 1200;
    while (Date.now() < deadline) {
      try {
        const fd = await files.openFd(swap);
        const target = readlinkSync(`/proc/self/fd/${fd}`);
        fs.closeSync(fd);
        expect(target).toBe(join(allowed, 'lun.img'));
        opened++;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EACCES' && (err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
        refusedCount++;
      }
          }
    await exited;
    // Both outcomes must have happened, or the race was not exercised.
    expect(opened).toBeGreaterThan(0);
    expect(refusedCount).toBeGreaterThan(0);
  });
});

describe('handlers open through the context opener', () => {
  const files = createFileOpener([allowed]);
  const base = { size: undefined, blockSize: 512, readOnly: true, log: silentLog, files };

  it('file handler: a symlink leading out is refused with EACCES (not a generic config error)', async () => {
    await expect(openDevConfig(`file/${join(allowed, 'rel-escape.img')}`, base)).rejects.toMatchObject({ code: 'EACCES' });
    writeFileSync(join(allowed, 'disk.img'), Buffer.alloc(4096));
    const store = await openDevConfig(`file/${join(allowed, 'disk.img')}`, base);
    await store.close();
  });

  it('file handler: a file it created for a failed open is removed again, through the confined directory', async () => {
    const path = join(allowed, 'odd-size.img');
    await expect(openDevConfig(`file/${path};create=1`, { ...base, readOnly: false, size: 1000 })).rejects.toThrow(/not a positive multiple/);
    expect(existsSync(path)).toBe(false);
  });

  it('file handler: "?" in the path is part of the path (the confined path is the opened path)', async () => {
    writeFileSync(join(allowed, 'q?x.img'), Buffer.alloc(4096));
    const store = await openDevConfig(`file/${join(allowed, 'q?x.img')}`, base);
    expect(store.size).toBe(4096);
    await store.close();
  });

  it('user handler module: outside is refused, inside loads', async () => {
    const source = "export default { name: 'mod', open() { return { size: 512, blockSize: 512, read() {}, close() {} }; } };";
    writeFileSync(join(outside, 'evil.mjs'), source);
    writeFileSync(join(allowed, 'good.mjs'), source);
    symlinkSync(join(outside, 'evil.mjs'), join(allowed, 'sneaky.mjs'));
    await expect(loadHandlerModule(join(outside, 'evil.mjs'), files)).rejects.toThrow(/evil\.mjs: refused/);
    await expect(loadHandlerModule(join(allowed, 'sneaky.mjs'), files)).rejects.toThrow(/refused/);
    expect((await loadHandlerModule(join(allowed, 'good.mjs'), files))?.name).toBe('mod');
    expect(await loadHandlerModule(join(allowed, 'absent.mjs'), files)).toBeUndefined();
  });
});

describe.runIf(qemuImgAvailable())('qcow2 backing files are confined', () => {
  const files = createFileOpener([allowed]);
  const ctx = openContext({ readOnly: true, files });
  writeFileSync(join(allowed, 'base.raw'), Buffer.alloc(1 << 20, 0x41));
  writeFileSync(join(outside, 'base.raw'), Buffer.alloc(1 << 20, 0x42));
  const make = (name: string, backing: string) => {
    const path = join(allowed, name);
    qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', backing, '-F', 'raw', path, '1M');
    return path;
  };

  it('a backing file inside (relative or absolute) opens and reads through', async () => {
    for (const backing of ['base.raw', join(allowed, 'base.raw')]) {
      const store = await qcow2Handler.open(make(`ok-${backing.length}.qcow2`, backing), ctx);
      const out = Buffer.alloc(512);
      await store.read(0, [out]);
      expect(out.every((b) => b === 0x41)).toBe(true);
      await store.close();
    }
  });

  it('an absolute backing file outside is refused', async () => {
    await expect(qcow2Handler.open(make('abs.qcow2', join(outside, 'base.raw')), ctx)).rejects.toMatchObject({ code: 'EACCES' });
    await expect(qcow2Handler.open(make('passwd.qcow2', '/etc/passwd'), ctx)).rejects.toThrow(/\/etc\/passwd: refused/);
  });

  it('a relative backing file escaping with "../" is refused', async () => {
    await expect(qcow2Handler.open(make('rel.qcow2', '../outside/base.raw'), ctx)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('a qcow2 backing file inside whose own backing is outside is refused (the whole chain)', async () => {
    const mid = join(allowed, 'mid.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', join(outside, 'base.raw'), '-F', 'raw', mid, '1M');
    const top = join(allowed, 'top.qcow2');
    qemuImgOk('create', '-q', '-f', 'qcow2', '-u', '-b', 'mid.qcow2', '-F', 'qcow2', top, '1M');
    await expect(qcow2Handler.open(top, ctx)).rejects.toMatchObject({ code: 'EACCES' });
  });

  it('without allowed directories the outside backing file still opens (unconfined)', async () => {
    const store = await qcow2Handler.open(join(allowed, 'abs.qcow2'), openContext({ readOnly: true }));
    const out = Buffer.alloc(512);
    await store.read(0, [out]);
    expect(out[0]).toBe(0x42);
    await store.close();
    expect(readFileSync(join(outside, 'base.raw'))[0]).toBe(0x42);
  });
});
