import { describe, expect, it } from 'vitest';
import { toLunStore } from '../../src/backstore/lun-store.js';
import type { Backstore, WriteOptions } from '../../src/backstore/types.js';
import { ZERO_CHUNK_SIZE } from '../../src/backstore/zero-fill.js';

/** A synchronous in-memory store recording every call, with only the methods asked for. */
function memoryStore(size: number, methods: Array<keyof Backstore> = []) {
  const data = Buffer.alloc(size, 0xaa);
  const calls: string[] = [];
  const store: Record<string, unknown> = {
    size,
    blockSize: 512,
    read(offset: number, iov: readonly Buffer[]) {
      calls.push(`read ${offset}`);
      let at = offset;
      for (const b of iov) at += data.copy(b, 0, at, at + b.length);
    },
    close() {
      calls.push('close');
    },
  };
  const optional: Partial<Record<keyof Backstore, unknown>> = {
    write(offset: number, iov: readonly Buffer[], opts: WriteOptions) {
      calls.push(`write ${offset} ${iov.reduce((n, b) => n + b.length, 0)}${opts.fua ? ' fua' : ''}`);
      let at = offset;
      for (const b of iov) at += b.copy(data, at);
    },
    flush() {
      calls.push('flush');
    },
    discard(offset: number, length: number) {
      calls.push(`discard ${offset} ${length}`);
      data.fill(0, offset, offset + length);
    },
  };
  for (const m of methods) store[m] = optional[m];
  return { store: store as unknown as Backstore, data, calls };
}

describe('toLunStore defaults', () => {
  it('makes a read+close-only handler read-only: writes, discards and zeroing throw EROFS', () => {
    const { store } = memoryStore(4096);
    const lun = toLunStore(store);
    expect(lun.readOnly).toBe(true);
    expect(lun.thin).toBe(false);
    expect(lun.writeCache).toBe(false);
    expect(() => lun.write(0, [Buffer.alloc(512)], { fua: false })).toThrow(expect.objectContaining({ code: 'EROFS' }));
    expect(() => lun.writeZeroes(0, 512, { unmap: false })).toThrow(expect.objectContaining({ code: 'EROFS' }));
    expect(() => lun.discard(0, 512)).toThrow(expect.objectContaining({ code: 'EROFS' }));
  });

  it('honours readOnly: true even when the handler has write', () => {
    const { store } = memoryStore(4096, ['write']);
    const lun = toLunStore({ ...store, readOnly: true, write: store.write } as Backstore);
    expect(lun.readOnly).toBe(true);
    expect(() => lun.write(0, [Buffer.alloc(512)], { fua: false })).toThrow(/read-only/);
  });

  it('uses the handler own read and write functions when no default logic is needed', () => {
    const { store, calls } = memoryStore(4096, ['write']);
    const lun = toLunStore(store);
    // No flush => no write cache => FUA needs nothing extra => write is the handler's bound function.
    expect(lun.write.name).toBe('bound write');
    expect(lun.read.name).toBe('bound read');
    lun.write(0, [Buffer.alloc(512, 1)], { fua: true });
    expect(calls).toEqual(['write 0 512 fua']);
  });

  it('keeps synchronous results synchronous (no promise on the read/write path)', () => {
    const { store } = memoryStore(4096, ['write', 'flush']);
    const lun = toLunStore(store);
    const out = [Buffer.alloc(512)];
    expect(lun.read(0, out)).toBeUndefined();
    expect(lun.write(0, out, { fua: false })).toBeUndefined();
    expect(lun.write(0, out, { fua: true })).toBeUndefined();
    expect(lun.writeZeroes(0, 1024, { unmap: false })).toBeUndefined();
    expect(lun.flush()).toBeUndefined();
  });

  it('emulates FUA as write then flush when the store has a cache but no native FUA', async () => {
    const { store, calls } = memoryStore(4096, ['write', 'flush']);
    const lun = toLunStore(store);
    expect(lun.writeCache).toBe(true);
    lun.write(0, [Buffer.alloc(512)], { fua: false });
    lun.write(512, [Buffer.alloc(512)], { fua: true });
    expect(calls).toEqual(['write 0 512', 'write 512 512 fua', 'flush']);
  });

  it('emulated FUA waits for an asynchronous write before flushing', async () => {
    const calls: string[] = [];
    let finishWrite!: () => void;
    const lun = toLunStore({
      size: 4096,
      blockSize: 512,
      read() {},
      write: () => new Promise<void>((resolve) => (finishWrite = () => (calls.push('write done'), resolve()))),
      flush: () => void calls.push('flush'),
      close() {},
    });
    const pending = lun.write(0, [Buffer.alloc(512)], { fua: true });
    expect(pending).toBeInstanceOf(Promise);
    expect(calls).toEqual([]);
    finishWrite();
    await pending;
    expect(calls).toEqual(['write done', 'flush']);
  });

  it('passes FUA to a handler that declares native FUA, without a flush', () => {
    const { store, calls } = memoryStore(4096, ['write', 'flush']);
    const lun = toLunStore({ ...store, fua: true, write: store.write, flush: store.flush, read: store.read, close: store.close } as Backstore);
    lun.write(0, [Buffer.alloc(512)], { fua: true });
    expect(calls).toEqual(['write 0 512 fua']);
  });

  it('emulates writeZeroes with real zero writes in bounded chunks', () => {
    const size = 3 * ZERO_CHUNK_SIZE;
    const { store, data, calls } = memoryStore(size, ['write']);
    const lun = toLunStore(store);
    const length = 2 * ZERO_CHUNK_SIZE + 4096;
    lun.writeZeroes(512, length, { unmap: false });
    expect(calls).toEqual([`write 512 ${ZERO_CHUNK_SIZE}`, `write ${512 + ZERO_CHUNK_SIZE} ${ZERO_CHUNK_SIZE}`, `write ${512 + 2 * ZERO_CHUNK_SIZE} 4096`]);
    expect(data[511]).toBe(0xaa);
    expect(data.subarray(512, 512 + length).every((b) => b === 0)).toBe(true);
    expect(data[512 + length]).toBe(0xaa);
  });

  it('emulated writeZeroes follows an asynchronous write chunk by chunk, in order', async () => {
    const writes: number[] = [];
    let inFlight = 0;
    const lun = toLunStore({
      size: 4 * ZERO_CHUNK_SIZE,
      blockSize: 512,
      read() {},
      async write(offset, iov) {
        expect(inFlight).toBe(0);
        inFlight++;
        await new Promise((r) => setImmediate(r));
        expect(iov.every((b) => b.every((x) => x === 0))).toBe(true);
        writes.push(offset);
        inFlight--;
      },
      close() {},
    });
    await lun.writeZeroes(0, 3 * ZERO_CHUNK_SIZE, { unmap: true });
    expect(writes).toEqual([0, ZERO_CHUNK_SIZE, 2 * ZERO_CHUNK_SIZE]);
  });

  it('emulated writeZeroes and FUA pass the abort signal on, and an abort between zero chunks stops the walk', async () => {
    const seen: string[] = [];
    const controller = new AbortController();
    const lun = toLunStore({
      size: 4 * ZERO_CHUNK_SIZE,
      blockSize: 512,
      abortable: true,
      read() {},
      async write(offset, _iov, opts) {
        seen.push(`write ${offset} ${opts.signal === controller.signal ? 'signal' : 'none'}`);
        if (offset === ZERO_CHUNK_SIZE) controller.abort(new Error('aborted by the test'));
      },
      flush(opts) {
        seen.push(`flush ${opts?.signal === controller.signal ? 'signal' : 'none'}`);
      },
      close() {},
    });
    await lun.write(0, [Buffer.alloc(512)], { fua: true, signal: controller.signal });
    expect(seen).toEqual(['write 0 signal', 'flush signal']);
    seen.length = 0;
    await expect(lun.writeZeroes(0, 3 * ZERO_CHUNK_SIZE, { unmap: false, signal: controller.signal })).rejects.toThrow('aborted by the test');
    expect(seen).toEqual(['write 0 signal', `write ${ZERO_CHUNK_SIZE} signal`]); // the third chunk never started
  });

  it('emulates writeZeroes with unmap through discard on a thin store', () => {
    const { store, calls } = memoryStore(4096, ['write', 'discard']);
    const lun = toLunStore(store);
    expect(lun.thin).toBe(true);
    lun.writeZeroes(1024, 2048, { unmap: true });
    lun.writeZeroes(0, 512, { unmap: false });
    expect(calls).toEqual(['discard 1024 2048', 'write 0 512']);
  });

  it('never turns writeZeroes into a discard when discarded blocks do not read as zeros (encryption layer)', () => {
    const { store, calls } = memoryStore(4096, ['write', 'discard']);
    const lun = toLunStore({ ...store, discardZeroes: false });
    expect(lun.thin).toBe(true);
    expect(lun.discardZeroes).toBe(false);
    lun.writeZeroes(1024, 512, { unmap: true });
    expect(calls).toEqual(['write 1024 512']);
  });

  it('discard granularity: 4 KiB unless the handler declares a coarser unit', () => {
    const { store } = memoryStore(4096, ['write', 'discard']);
    expect(toLunStore(store).discardGranularity).toBe(4096);
    expect(toLunStore({ ...store, discardGranularity: 65536 }).discardGranularity).toBe(65536);
  });

  it('without discard: not thin and discard is a no-op', () => {
    const { store, calls, data } = memoryStore(4096, ['write']);
    const lun = toLunStore(store);
    expect(lun.thin).toBe(false);
    expect(lun.discard(0, 4096)).toBeUndefined();
    expect(calls).toEqual([]);
    expect(data[0]).toBe(0xaa);
  });

  it('thin: false from the handler turns its discard off', () => {
    const { store, calls } = memoryStore(4096, ['write', 'discard']);
    const lun = toLunStore({ ...store, thin: false, write: store.write, discard: store.discard, read: store.read, close: store.close } as Backstore);
    expect(lun.thin).toBe(false);
    lun.discard(0, 512);
    expect(calls).toEqual([]);
  });

  it('without flush: flush is a no-op and there is no write cache', () => {
    const { store } = memoryStore(4096, ['write']);
    const lun = toLunStore(store);
    expect(lun.writeCache).toBe(false);
    expect(lun.flush()).toBeUndefined();
  });

  it('respects writeCache: false even when flush exists', () => {
    const { store, calls } = memoryStore(4096, ['write', 'flush']);
    const lun = toLunStore({ ...store, writeCache: false, write: store.write, flush: store.flush, read: store.read, close: store.close } as Backstore);
    expect(lun.writeCache).toBe(false);
    lun.write(0, [Buffer.alloc(512)], { fua: true });
    expect(calls).toEqual(['write 0 512 fua']);
  });

  it('without blockStatus: the whole range is mapped and hasBlockStatus is false', () => {
    const lun = toLunStore(memoryStore(4096).store);
    expect(lun.hasBlockStatus).toBe(false);
    expect(lun.blockStatus(512, 1024)).toEqual([{ offset: 512, length: 1024, state: 'mapped' }]);
  });

  it('without resize: resize throws ENOTSUP; with resize the LUN size follows', async () => {
    expect(() => toLunStore(memoryStore(4096).store).resize(8192)).toThrow(expect.objectContaining({ code: 'ENOTSUP' }));
    let handlerSize = 4096;
    const lun = toLunStore({
      get size() {
        return handlerSize;
      },
      blockSize: 512,
      read() {},
      resize: async (n: number) => {
        handlerSize = n;
      },
      close() {},
    });
    await lun.resize(8192);
    expect(lun.size).toBe(8192);
  });

  it('close reaches the handler', () => {
    const { store, calls } = memoryStore(4096);
    toLunStore(store).close();
    expect(calls).toEqual(['close']);
  });
});
