import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import fileHandler, { createFileHandler } from '../../../handlers/file/index.js';
import type { Fallocator } from '../../../handlers/file/fallocate.js';
import type { VectorIo } from '../../../src/io/vector-io.js';
import { toLunStore } from '../../../src/backstore/lun-store.js';
import type { Backstore, OpenContext } from '../../../src/backstore/types.js';
import { openContext } from '../../backstore/context.js';

const MiB = 1 << 20;
const dir = fs.mkdtempSync(join(tmpdir(), 'tcmu-file-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));
afterEach(() => vi.restoreAllMocks());

let counter = 0;
function imagePath(size?: number, fill?: number): string {
  const path = join(dir, `img-${counter++}`);
  if (size !== undefined) {
    if (fill === undefined) {
      fs.writeFileSync(path, '');
      fs.truncateSync(path, size);
    } else {
      fs.writeFileSync(path, Buffer.alloc(size, fill));
    }
  }
  return path;
}

function open(path: string, ctx: Partial<OpenContext> = {}, handler = fileHandler): Promise<Backstore> {
  return Promise.resolve(handler.open(path, openContext(ctx)));
}

const allBytes = (buf: Buffer, value: number) => buf.every((b) => b === value);

describe.each(['threads', 'uring'] as const)('file handler: I/O (io=%s)', (io) => {
  const options = { io };
  it('writes and reads multi-buffer iovs at an offset, asynchronously', async () => {
    const lun = toLunStore(await open(imagePath(4 * MiB), { size: 4 * MiB, options }));
    const a = Buffer.alloc(512, 1);
    const b = Buffer.alloc(4096, 2);
    const c = Buffer.alloc(1536, 3);
    const pending = lun.write(8192, [a, b, c], { fua: false });
    expect(pending).toBeInstanceOf(Promise);
    await pending;
    const x = Buffer.alloc(1024);
    const y = Buffer.alloc(5120);
    await lun.read(8192, [x, y]);
    expect(Buffer.concat([x, y]).equals(Buffer.concat([a, b, c]))).toBe(true);
    await lun.close();
  });

  it('continues short transfers (more iovecs than IOV_MAX)', async () => {
    const path = imagePath(2 * MiB);
    const lun = toLunStore(await open(path, { size: 2 * MiB, options }));
    const pieces = Array.from({ length: 3000 }, (_, i) => Buffer.alloc(512, i & 0xff));
    await lun.write(0, pieces, { fua: false });
    const onDisk = fs.readFileSync(path);
    for (let i = 0; i < 3000; i++) expect(onDisk[i * 512]).toBe(i & 0xff);
    const back = Array.from({ length: 3000 }, () => Buffer.alloc(512));
    const readv = vi.spyOn(fs, 'readv');
    await lun.read(0, back);
    // libuv clamps a readv to IOV_MAX (1024) buffers, io_uring takes at
    // most IOV_MAX: either way the handler had to continue.
    if (io === 'threads') expect(readv.mock.calls.length).toBeGreaterThan(1);
    else expect(readv).not.toHaveBeenCalled();
    expect(back.every((buf, i) => allBytes(buf, i & 0xff))).toBe(true);
    await lun.close();
  });

  it('fails a read with EIO when the file was truncated under it', async () => {
    const path = imagePath(MiB);
    const lun = toLunStore(await open(path, { size: MiB, options }));
    fs.truncateSync(path, 4096);
    await expect(lun.read(8192, [Buffer.alloc(512)])).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('end of the file') });
    await lun.close();
  });

  it('reports errno codes of failed transfers', async () => {
    const path = imagePath(MiB);
    const store = (await open(path, { size: MiB, options })) as unknown as { io: VectorIo; close(): Promise<void> };
    const closed = fs.openSync(path, 'r');
    fs.closeSync(closed); // a descriptor number that is not open
    await expect(store.io.read(closed, [Buffer.alloc(512)], 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(store.io.write(closed, [Buffer.alloc(512)], 0)).rejects.toMatchObject({ code: 'EBADF' });
    await store.close();
  });

  it('keeps many operations in flight, beyond the io_uring queue size', async () => {
    const path = imagePath(2 * MiB);
    const lun = toLunStore(await open(path, { size: 2 * MiB, options }));
    const n = 700; // > URING_ENTRIES (256): the rest wait their turn
    await Promise.all(Array.from({ length: n }, (_, i) => lun.write(i * 2048, [Buffer.alloc(2048, i & 0xff)], { fua: false })));
    const back = Array.from({ length: n }, () => Buffer.alloc(2048));
    await Promise.all(back.map((buf, i) => lun.read(i * 2048, [buf])));
    expect(back.every((buf, i) => allBytes(buf, i & 0xff))).toBe(true);
    await lun.close();
  });

  it('takes memory from ArrayBuffers, pool slabs and SharedArrayBuffers in one batch', async () => {
    const lun = toLunStore(await open(imagePath(MiB), { size: MiB, options }));
    const shared = Buffer.from(new SharedArrayBuffer(8192), 4096, 2048).fill(7); // per-operation path under io_uring
    const pooled = Buffer.from('pool slab bytes!'.repeat(32)); // 512 bytes of Node's shared pool
    const own = Buffer.alloc(1024, 9);
    await Promise.all([
      lun.write(0, [shared], { fua: false }),
      lun.write(4096, [pooled, own], { fua: false }),
      lun.write(8192, [own, shared], { fua: false }),
    ]);
    const back = [Buffer.alloc(2048), Buffer.from(new SharedArrayBuffer(1536)), Buffer.alloc(3072)];
    await Promise.all([lun.read(0, [back[0]!]), lun.read(4096, [back[1]!]), lun.read(8192, [back[2]!])]);
    expect(allBytes(back[0]!, 7)).toBe(true);
    expect(back[1]!.equals(Buffer.concat([pooled, own]))).toBe(true);
    expect(back[2]!.equals(Buffer.concat([own, shared]))).toBe(true);
    await lun.close();
  });
});

// Observed through spies on node:fs, which only the thread-pool path calls (io_uring bypasses them).
describe('file handler: FUA and flush (io=threads)', () => {
  it('implements FUA as write then fdatasync (the core default), and flush as fdatasync', async () => {
    const options = { io: 'threads' as const };
    const lun = toLunStore(await open(imagePath(MiB), { size: MiB, options }));
    expect(lun.writeCache).toBe(true);
    const order: string[] = [];
    const writev = fs.writev;
    vi.spyOn(fs, 'writev').mockImplementation(((...args: Parameters<typeof fs.writev>) => {
      order.push('writev');
      return (writev as (...a: unknown[]) => void)(...args);
    }) as typeof fs.writev);
    const fdatasync = fs.fdatasync;
    vi.spyOn(fs, 'fdatasync').mockImplementation(((fd: number, cb: fs.NoParamCallback) => {
      order.push('fdatasync');
      fdatasync(fd, cb);
    }) as typeof fs.fdatasync);
    await lun.write(0, [Buffer.alloc(512, 1)], { fua: false });
    expect(order).toEqual(['writev']);
    await lun.write(0, [Buffer.alloc(512, 1)], { fua: true });
    expect(order).toEqual(['writev', 'writev', 'fdatasync']);
    await lun.flush();
    expect(order).toEqual(['writev', 'writev', 'fdatasync', 'fdatasync']);
    await lun.close();
  });
});

describe('file handler: io_uring reads served from the page cache', () => {
  it('completes a cached read synchronously (no promise), a large one too; an uncached or partly cached one through the ring', async () => {
    const path = imagePath();
    // O_DIRECT: on disk, not in the page cache.
    execFileSync('dd', ['if=/dev/urandom', `of=${path}`, 'bs=4096', 'count=64', 'oflag=direct', 'status=none']);
    const lun = toLunStore(await open(path, { size: 64 * 4096, options: { io: 'uring' } }));
    const cold = [Buffer.alloc(4096), Buffer.alloc(8192)];
    const miss = lun.read(16384, cold);
    expect(miss).toBeInstanceOf(Promise);
    await miss;
    const onDisk = fs.readFileSync(path);
    expect(Buffer.concat(cold).equals(onDisk.subarray(16384, 16384 + 12288))).toBe(true);
    // Everything is cached now (the readFileSync above).
    const warm = [Buffer.alloc(512), Buffer.alloc(3584)];
    expect(lun.read(40960, warm)).toBeUndefined();
    expect(Buffer.concat(warm).equals(onDisk.subarray(40960, 45056))).toBe(true);
    // A large cached read is copied at once too (within a budget per batch: test/io/uring-large-read.test.ts).
    const large = Buffer.alloc(256 * 1024);
    expect(lun.read(0, [large])).toBeUndefined();
    expect(large.equals(onDisk.subarray(0, 256 * 1024))).toBe(true);
    // A read that crosses the end of the file: the cached part at once, the rest through the ring (EOF error).
    fs.truncateSync(path, 64 * 4096 - 1024);
    const tail = Buffer.alloc(4096);
    const short = lun.read(63 * 4096, [tail]);
    expect(short).toBeInstanceOf(Promise);
    await expect(short).rejects.toMatchObject({ code: 'EIO', message: expect.stringContaining('end of the file') });
    expect(tail.subarray(0, 3072).equals(onDisk.subarray(63 * 4096, 63 * 4096 + 3072))).toBe(true);
    await lun.close();
  });
});

describe('file handler: choosing the I/O path', () => {
  it('uses io_uring by default where available, else the thread pool', async () => {
    const path = imagePath(MiB, 5);
    const auto = (await open(path, { size: MiB })) as unknown as { io: { kind: string }; close(): Promise<void> };
    expect(['io_uring', 'threads']).toContain(auto.io.kind);
    await auto.close();
    const noRing = createFileHandler({ ringIo: () => null });
    const fallback = (await open(path, { size: MiB }, noRing)) as unknown as { io: { kind: string }; close(): Promise<void> };
    expect(fallback.io.kind).toBe('threads');
    const lun = toLunStore(fallback as unknown as Backstore);
    const buf = Buffer.alloc(512);
    await lun.read(0, [buf]);
    expect(allBytes(buf, 5)).toBe(true);
    await lun.close();
    const threads = (await open(path, { size: MiB, options: { io: 'threads' } })) as unknown as { io: { kind: string }; close(): Promise<void> };
    expect(threads.io.kind).toBe('threads');
    await threads.close();
  });

  it('refuses io=uring where io_uring is unavailable, and unknown io modes', async () => {
    const path = imagePath(MiB);
    const noRing = createFileHandler({ ringIo: () => null });
    await expect(open(path, { size: MiB, options: { io: 'uring' } }, noRing)).rejects.toThrow('io=uring, but io_uring is unavailable');
    await expect(open(path, { size: MiB, options: { io: 'aio' } })).rejects.toThrow('file: option io="aio" is not one of auto, uring, threads');
  });
});

describe('file handler: sizing and opening', () => {
  it('refuses a file smaller than the LUN, naming both sizes', async () => {
    const path = imagePath(MiB);
    await expect(open(path, { size: 2 * MiB })).rejects.toThrow(
      `file: ${path} is 1048576 bytes, smaller than the LUN (2097152 bytes); add ;extend=1 to grow it`,
    );
  });

  it('extends a smaller file with extend=1', async () => {
    const path = imagePath(MiB, 7);
    const store = await open(path, { size: 3 * MiB, options: { extend: '1' } });
    expect(store.size).toBe(3 * MiB);
    expect(fs.statSync(path).size).toBe(3 * MiB);
    const out = Buffer.alloc(1024);
    await store.read(MiB - 512, [out]);
    expect(allBytes(out.subarray(0, 512), 7) && allBytes(out.subarray(512), 0)).toBe(true);
    await store.close();
  });

  it('accepts a larger file and exposes only the LUN size', async () => {
    const path = imagePath(4 * MiB);
    const store = await open(path, { size: MiB });
    expect(store.size).toBe(MiB);
    expect(fs.statSync(path).size).toBe(4 * MiB);
    await store.close();
  });

  it('uses the file size when the LUN size is unknown, and refuses one that is not whole blocks', async () => {
    const store = await open(imagePath(2 * MiB));
    expect(store.size).toBe(2 * MiB);
    await store.close();
    const odd = imagePath(1000);
    await expect(open(odd)).rejects.toThrow(`file: the size of ${odd} (1000 bytes) is not a positive multiple of the block size 512`);
  });

  it('refuses a missing file unless create=1, which creates it at the LUN size', async () => {
    const path = imagePath();
    await expect(open(path, { size: MiB })).rejects.toThrow(`file: ${path} does not exist (add ;create=1 to create it)`);
    await expect(open(path, { options: { create: '1' } })).rejects.toThrow('without knowing the LUN size');
    expect(fs.existsSync(path)).toBe(false);
    const store = await open(path, { size: 2 * MiB, options: { create: '1' } });
    expect(fs.statSync(path).size).toBe(2 * MiB);
    await store.close();
  });

  it('refuses bad config and options with clear errors', async () => {
    await expect(open('relative/path.img', { size: MiB })).rejects.toThrow('file: "relative/path.img" is not an absolute path');
    await expect(open(imagePath(MiB), { size: MiB, options: { extnd: '1' } })).rejects.toThrow('file: unknown option "extnd" (allowed: create, extend, io)');
    await expect(open(imagePath(MiB), { size: MiB, options: { extend: 'please' } })).rejects.toThrow('file: option extend="please" is not a boolean');
    await expect(open(dir, { size: MiB })).rejects.toThrow(/file: cannot open .*EISDIR|neither a regular file nor a block device/);
    // Refused from an O_PATH fd (src/backstore/confine.ts): the device is never really opened.
    await expect(open('/dev/null', { size: MiB })).rejects.toThrow('file: cannot open /dev/null: EINVAL: /dev/null is a character device, not a regular file or block device; not opened');
  });

  it('read-only: opens O_RDONLY (works on a 0444 file), has no write method, writes give EROFS', async () => {
    const path = imagePath(MiB, 5);
    fs.chmodSync(path, 0o444);
    const store = await open(path, { size: MiB, readOnly: true });
    expect(store.write).toBeUndefined();
    const lun = toLunStore(store);
    expect(lun.readOnly).toBe(true);
    expect(() => lun.write(0, [Buffer.alloc(512)], { fua: false })).toThrow(expect.objectContaining({ code: 'EROFS' }));
    const out = Buffer.alloc(512);
    await lun.read(0, [out]);
    expect(allBytes(out, 5)).toBe(true);
    await lun.close();
    await expect(open(path, { size: 2 * MiB, readOnly: true, options: { extend: '1' } })).rejects.toThrow('the LUN is read-only so it cannot be extended');
  });

  it('resize grows the file; a shrink keeps the data', async () => {
    const path = imagePath(MiB);
    const lun = toLunStore(await open(path, { size: MiB }));
    await lun.resize(4 * MiB);
    expect(lun.size).toBe(4 * MiB);
    expect(fs.statSync(path).size).toBe(4 * MiB);
    await lun.resize(2 * MiB);
    expect(lun.size).toBe(2 * MiB);
    expect(fs.statSync(path).size).toBe(4 * MiB);
    await expect(Promise.resolve().then(() => lun.resize(1000))).rejects.toMatchObject({ code: 'EINVAL' });
    await lun.close();
  });
});

describe('file handler: discard and zeroing with the native fallocate', () => {
  const blocks = (path: string) => fs.statSync(path).blocks;

  it('is thin on this filesystem (the probe found hole punching)', async () => {
    const lun = toLunStore(await open(imagePath(MiB), { size: MiB }));
    expect(lun.thin).toBe(true);
    await lun.close();
  });

  it('discard punches a hole: st_blocks drops and the range reads zeros', async () => {
    const path = imagePath(4 * MiB, 0x5a);
    const lun = toLunStore(await open(path, { size: 4 * MiB }));
    await lun.flush();
    const before = blocks(path);
    await lun.discard(MiB, 2 * MiB);
    const after = blocks(path);
    expect(before - after).toBeGreaterThanOrEqual((2 * MiB) / 512);
    expect(fs.statSync(path).size).toBe(4 * MiB);
    const out = Buffer.alloc(2 * MiB + 1024);
    await lun.read(MiB - 512, [out]);
    expect(out[0]).toBe(0x5a);
    expect(allBytes(out.subarray(512, 512 + 2 * MiB), 0)).toBe(true);
    expect(out[out.length - 1]).toBe(0x5a);
    await lun.close();
  });

  it('writeZeroes reads back zeros; with unmap it also deallocates', async () => {
    const path = imagePath(4 * MiB, 0x77);
    const lun = toLunStore(await open(path, { size: 4 * MiB }));
    const before = blocks(path);
    await lun.writeZeroes(4096, 8192, { unmap: false });
    const out = Buffer.alloc(16384);
    await lun.read(0, [out]);
    expect(allBytes(out.subarray(0, 4096), 0x77) && allBytes(out.subarray(4096, 12288), 0) && allBytes(out.subarray(12288), 0x77)).toBe(true);
    await lun.writeZeroes(2 * MiB, MiB, { unmap: true });
    expect(before - blocks(path)).toBeGreaterThanOrEqual(MiB / 512);
    const big = Buffer.alloc(MiB, 1);
    await lun.read(2 * MiB, [big]);
    expect(allBytes(big, 0)).toBe(true);
    await lun.close();
  });
});

describe('file handler: when the filesystem lacks fallocate modes', () => {
  function unsupported(): Error {
    return Object.assign(new Error('fallocate: Operation not supported'), { code: 'EOPNOTSUPP' });
  }

  it('falls back to writing zeros after the first EOPNOTSUPP, and does not retry the syscall', async () => {
    const calls = { punch: 0, zero: 0 };
    const fallocator: Fallocator = {
      punchHole: () => {
        calls.punch++;
        throw unsupported();
      },
      zeroRange: () => {
        calls.zero++;
        throw unsupported();
      },
    };
    const handler = createFileHandler({ fallocator: () => fallocator });
    const path = imagePath(4 * MiB, 0x33);
    const lun = toLunStore(await open(path, { size: 4 * MiB }, handler));
    expect(calls.punch).toBe(1); // the probe at open
    expect(lun.thin).toBe(false);

    await lun.writeZeroes(512, MiB + 512, { unmap: true });
    await lun.writeZeroes(3 * MiB, 4096, { unmap: false });
    expect(calls).toEqual({ punch: 1, zero: 1 });
    const onDisk = fs.readFileSync(path);
    expect(onDisk[511]).toBe(0x33);
    expect(allBytes(onDisk.subarray(512, MiB + 1024), 0)).toBe(true);
    expect(onDisk[MiB + 1024]).toBe(0x33);
    expect(allBytes(onDisk.subarray(3 * MiB, 3 * MiB + 4096), 0)).toBe(true);

    // Not thin: UNMAP is a no-op and leaves the data.
    await lun.discard(0, 512);
    expect(fs.readFileSync(path)[0]).toBe(0x33);
    expect(calls.punch).toBe(1);
    await lun.close();
  });

  it('propagates other fallocate errors instead of hiding them', async () => {
    const fallocator: Fallocator = {
      punchHole: () => {},
      zeroRange: () => {
        throw Object.assign(new Error('fallocate: I/O error'), { code: 'EIO' });
      },
    };
    const lun = toLunStore(await open(imagePath(MiB), { size: MiB }, createFileHandler({ fallocator: () => fallocator })));
    expect(() => lun.writeZeroes(0, 512, { unmap: false })).toThrow(expect.objectContaining({ code: 'EIO' }));
    await lun.close();
  });

  it('works without any fallocate (addon missing): not thin, zeroing by writes', async () => {
    const path = imagePath(MiB, 9);
    const lun = toLunStore(await open(path, { size: MiB }, createFileHandler({ fallocator: () => undefined })));
    expect(lun.thin).toBe(false);
    await lun.writeZeroes(0, 4096, { unmap: true });
    expect(allBytes(fs.readFileSync(path).subarray(0, 4096), 0)).toBe(true);
    await lun.close();
  });
});
