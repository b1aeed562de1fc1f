import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { afterAll, describe, expect, test } from 'vitest';
import { native, type NativeMapping } from '../../src/native.js';

const addon = native();
const scratch = mkdtempSync(join(tmpdir(), 'tcmu-native-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

function sharedPair(size: number): [NativeMapping, NativeMapping] {
  const path = join('/dev/shm', `tcmu-native-test-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const fd = openSync(path, 'wx+');
  ftruncateSync(fd, size);
  closeSync(fd);
  const [a, b] = addon.socketPair();
  try {
    return [addon.openShared(path, size, a, a), addon.openShared(path, size, b, b)];
  } finally {
    unlinkSync(path);
  }
}

function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  const gc = runInNewContext('gc') as () => void;
  for (let i = 0; i < 5; i++) gc();
}

/** /proc/self/maps lines naming `path`. */
function mapsOf(path: string): string[] {
  return readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((line) => line.endsWith(path));
}

function nextEvent(m: NativeMapping): Promise<number> {
  return new Promise((resolve, reject) =>
    m.watch(
      (ack) => {
        m.unwatch();
        resolve(ack);
      },
      reject,
    ),
  );
}

describe('native mapping', () => {
  test('V8 does not count a mapping as memory of its own (no full collection per LUN opened)', () => {
    // V8 collects the whole heap at once when its count of external memory
    // jumps far past its limit; a LUN's data area is up to GiBs.
    const size = 256 * 1024 * 1024; // sparse in /dev/shm: nothing is allocated
    const before = v8.getHeapStatistics().external_memory;
    const [a, b] = sharedPair(size);
    const grown = v8.getHeapStatistics().external_memory - before;
    expect(grown).toBeLessThan(1024 * 1024);
    expect(a.buffer.byteLength).toBe(size);
    new Uint8Array(a.buffer)[size - 1] = 7;
    expect(new Uint8Array(b.buffer)[size - 1]).toBe(7);
    a.close();
    b.close();
    expect(a.buffer.byteLength).toBe(0); // detached: no view reaches the unmapped pages
  });

  test('a mapping dropped without close() stays mapped while a view of it lives, and is unmapped once that is collected', async () => {
    const path = join('/dev/shm', `tcmu-native-test-drop-${process.pid}`);
    writeFileSync(path, Buffer.alloc(8192));
    const [x, y] = addon.socketPair();
    let view: Uint8Array | undefined = ((): Uint8Array => {
      const m = addon.openShared(path, 8192, x, y);
      const v = new Uint8Array(m.buffer, 4096, 16);
      v[0] = 9;
      return v;
    })();
    unlinkSync(path);
    const afterTurn = () => new Promise((resolve) => setImmediate(resolve));
    collectGarbage();
    await afterTurn();
    expect(mapsOf(`${path} (deleted)`)).toHaveLength(1);
    expect(view[0]).toBe(9);
    view = undefined;
    for (let i = 0; i < 5 && mapsOf(`${path} (deleted)`).length > 0; i++) {
      collectGarbage();
      await afterTurn(); // Node-API runs finalizers after the collection, on the event loop
    }
    expect(mapsOf(`${path} (deleted)`)).toHaveLength(0);
  });

  test('both mappings see the same memory, zero copy', () => {
    const [a, b] = sharedPair(8192);
    expect(a.size).toBe(8192);
    expect(a.buffer.byteLength).toBe(8192);
    new Uint8Array(a.buffer)[100] = 42;
    expect(new Uint8Array(b.buffer)[100]).toBe(42);
    a.storeRelease32(64, 0xdeadbeef);
    expect(b.loadAcquire32(64)).toBe(0xdeadbeef);
    expect(new Uint32Array(b.buffer)[16]).toBe(0xdeadbeef);
    a.close();
    b.close();
  });

  test('close(true) retires: the addresses stay mapped, as private anonymous memory, while close() unmaps them', () => {
    /** Every /proc/self/maps line: [from, to) and the rest (perms, offset, device, inode, path). */
    const maps = () =>
      readFileSync('/proc/self/maps', 'utf8')
        .trim()
        .split('\n')
        .map((line) => {
          const [range, perms, ...rest] = line.split(/\s+/);
          const [from, to] = range!.split('-').map((hex) => BigInt(`0x${hex}`));
          return { from: from!, to: to!, perms: perms!, rest: rest.join(' ').trim() };
        });
    const marker = `tcmu-native-test-${process.pid}-`;
    const fileBacked = () => maps().filter((m) => m.rest.includes(marker)).map((m) => m.from);
    const covering = (at: bigint) => maps().find((m) => m.from <= at && at + 65536n <= m.to);
    const before = fileBacked();
    const [a, b] = sharedPair(65536);
    const both = fileBacked().filter((from) => !before.includes(from));
    expect(both).toHaveLength(2);
    a.close(true);
    expect(a.buffer.byteLength).toBe(0); // detached: JS cannot reach it
    const retired = both.filter((from) => !fileBacked().includes(from));
    expect(retired).toHaveLength(1);
    // Still mapped, read-write, now anonymous: no device, inode 0, no path.
    expect(covering(retired[0]!)).toMatchObject({ perms: 'rw-p', rest: expect.stringMatching(/^[0-9a-f]+ 00:00 0$/) });
    const unmapped = both.find((from) => from !== retired[0])!;
    b.close();
    expect(covering(unmapped)).toBeUndefined();
    expect(() => b.close('yes' as unknown as boolean)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
  });

  test('load/store reject misaligned or out-of-range offsets', () => {
    const [a, b] = sharedPair(4096);
    expect(() => a.loadAcquire32(2)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => a.loadAcquire32(4096)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => a.storeRelease32(-4, 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    a.close();
    b.close();
  });

  test('kick wakes the peer; coalesced kicks are drained in one event', async () => {
    const [a, b] = sharedPair(4096);
    const event = nextEvent(b);
    a.kick();
    a.kick();
    a.kick();
    expect(await event).toBe(12); // three 4-byte kicks drained together
    const again = nextEvent(a);
    b.kick();
    expect(await again).toBe(4);
    a.close();
    b.close();
  });

  test('close detaches the buffer, is idempotent, and later calls fail with EBADF', () => {
    const [a, b] = sharedPair(4096);
    const view = new Uint8Array(a.buffer);
    a.close();
    a.close();
    expect(a.buffer.byteLength).toBe(0);
    expect(view.length).toBe(0); // no JS access to unmapped memory
    expect(() => a.kick()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => a.loadAcquire32(0)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    b.close();
  });

  test('peer close reports EPIPE through onError', async () => {
    const [a, b] = sharedPair(4096);
    const failed = new Promise<Error & { code?: string }>((resolve) => b.watch(() => {}, resolve));
    a.close();
    expect((await failed).code).toBe('EPIPE');
    b.close();
  });

  test('watch twice is EBUSY; unwatch is idempotent', () => {
    const [a, b] = sharedPair(4096);
    a.watch(() => {}, () => {});
    expect(() => a.watch(() => {}, () => {})).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    a.unwatch();
    a.unwatch();
    a.close();
    b.close();
  });

  test('errors carry errno names', () => {
    expect(() => addon.openUio(join(scratch, 'no-such-uio'), 4096)).toThrow(
      expect.objectContaining({ code: 'ENOENT', errno: -2, syscall: 'open' }),
    );
    const small = join(scratch, 'small');
    writeFileSync(small, Buffer.alloc(100));
    const [x, y] = addon.socketPair();
    expect(() => addon.openShared(small, 4096, x, y)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    closeSync(x);
    closeSync(y);
  });
});

describe('fallocate', () => {
  test('punches a hole that reads back as zeros', (ctx) => {
    const path = join(scratch, 'falloc');
    writeFileSync(path, Buffer.alloc(65536, 0xff));
    const fd = openSync(path, 'r+');
    try {
      addon.fallocate(fd, addon.FALLOC_FL_PUNCH_HOLE | addon.FALLOC_FL_KEEP_SIZE, 4096, 8192);
    } catch (err) {
      closeSync(fd);
      // Some filesystems (overlay on old kernels) lack hole punching.
      if ((err as { code?: string }).code === 'EOPNOTSUPP' && !process.env.CI) {
        ctx.skip('the filesystem lacks FALLOC_FL_PUNCH_HOLE');
      }
      throw err;
    }
    closeSync(fd);
    const data = readFileSync(path);
    expect(statSync(path).size).toBe(65536);
    expect(data.subarray(4096, 12288).every((b) => b === 0)).toBe(true);
    expect(data[4095]).toBe(0xff);
    expect(data[12288]).toBe(0xff);
  });

  test('a bad fd is EBADF', () => {
    expect(() => addon.fallocate(99999, 0, 0, 4096)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('netlink', () => {
  test('open, port id, send to an unknown family gets an error reply, close', async () => {
    const fd = addon.netlinkOpen();
    expect(fd).toBeGreaterThan(0);
    expect(addon.netlinkPortId(fd)).toBeGreaterThan(0);
    // CTRL_CMD_GETFAMILY for a family that does not exist: the kernel
    // answers NLMSG_ERROR (type 2) with -ENOENT.
    const name = Buffer.from('no-such-family\0');
    const attrLen = 4 + name.length;
    const total = 16 + 4 + ((attrLen + 3) & ~3);
    const msg = Buffer.alloc(total);
    msg.writeUInt32LE(total, 0);
    msg.writeUInt16LE(0x10, 4); // GENL_ID_CTRL
    msg.writeUInt16LE(0x1 | 0x4, 6); // NLM_F_REQUEST | NLM_F_ACK
    msg.writeUInt32LE(7, 8); // seq
    msg[16] = 3; // CTRL_CMD_GETFAMILY
    msg[17] = 1; // version
    msg.writeUInt16LE(attrLen, 20);
    msg.writeUInt16LE(2, 22); // CTRL_ATTR_FAMILY_NAME
    name.copy(msg, 24);
    const reply = new Promise<Buffer>((resolve, reject) => addon.netlinkWatch(fd, resolve, reject));
    expect(() => addon.netlinkWatch(fd, () => {}, () => {})).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    addon.netlinkSend(fd, msg);
    const datagram = await reply;
    expect(datagram.readUInt16LE(4)).toBe(2); // NLMSG_ERROR
    expect(datagram.readUInt32LE(8)).toBe(7); // our seq
    expect(datagram.readInt32LE(16)).toBe(-2); // -ENOENT
    addon.netlinkClose(fd);
    expect(() => addon.netlinkSend(fd, msg)).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

/** io_uring may be forbidden where the tests run (seccomp, kernel.io_uring_disabled): those tests skip. */
function ringOrSkip(): boolean {
  try {
    addon.ioRingCreate(4).close();
    return true;
  } catch (err) {
    const code = (err as { code?: string }).code;
    // Outside CI a kernel or sandbox without io_uring is a visible skip; CI must have it.
    if (!process.env.CI && (code === 'ENOSYS' || code === 'EPERM' || code === 'ENOTSUP' || code === 'EACCES')) {
      console.warn(`io_uring unavailable (${code}): skipping the io_ring tests`);
      return false;
    }
    throw err;
  }
}

describe.skipIf(!ringOrSkip())('io_ring', () => {
  function reapUntil(ring: ReturnType<typeof addon.ioRingCreate>, want: number): Promise<Array<[number, number]>> {
    const got: Array<[number, number]> = [];
    const out = new Int32Array(16);
    const take = () => {
      const n = ring.reap(out);
      for (let i = 0; i < n; i++) got.push([out[2 * i]!, out[2 * i + 1]!]);
    };
    take();
    if (got.length >= want) return Promise.resolve(got);
    return new Promise((resolve, reject) => {
      ring.watch(() => {
        take();
        if (got.length >= want) {
          ring.unwatch();
          resolve(got);
        }
      }, reject);
    });
  }

  test('vectored writes and reads at a position, zero copy, results tagged', async () => {
    const path = join(scratch, 'ring.img');
    writeFileSync(path, Buffer.alloc(65536));
    const fd = openSync(path, 'r+');
    const ring = addon.ioRingCreate(8);
    expect(ring.sqEntries).toBe(8);
    expect(ring.cqEntries).toBeGreaterThanOrEqual(16);
    const a = Buffer.alloc(4096, 1);
    const b = new Uint8Array(1024).fill(2);
    expect(ring.prepWritev(fd, [a, b], 8192, 7)).toBe(true);
    expect(ring.submit()).toBe(1);
    expect(await reapUntil(ring, 1)).toEqual([[7, 5120]]);
    const x = Buffer.alloc(1024);
    const y = Buffer.alloc(4096);
    expect(ring.prepReadv(fd, [x, y], 8192, 1)).toBe(true);
    expect(ring.prepReadv(fd, [Buffer.alloc(100)], 65536, 2)).toBe(true); // at EOF: 0 bytes
    expect(ring.submit()).toBe(2);
    const results = await reapUntil(ring, 2);
    expect(results.sort((p, q) => p[0] - q[0])).toEqual([
      [1, 5120],
      [2, 0],
    ]);
    expect(x.every((v) => v === 1)).toBe(true);
    expect(y.subarray(0, 3072).every((v) => v === 1) && y.subarray(3072).every((v) => v === 2)).toBe(true);
    expect(readFileSync(path).subarray(8192 + 4096, 8192 + 5120).every((v) => v === 2)).toBe(true);
    ring.close();
    closeSync(fd);
  });

  /** Stage records, run once, then reap until `want` results arrived (buffered writes may finish on io-wq). */
  async function runBatch(
    ring: ReturnType<typeof addon.ioRingCreate>,
    records: number[][],
    want: number,
  ): Promise<Array<[number, number]>> {
    const stage = Float64Array.from(records.flat());
    const out = new Int32Array(2 + 2 * 16);
    ring.run(stage, records.length, out);
    expect(out[1]).toBe(0); // everything taken by the kernel
    const got: Array<[number, number]> = [];
    for (let i = 0; i < out[0]!; i++) got.push([out[2 + 2 * i]!, out[3 + 2 * i]!]);
    if (got.length < want) got.push(...(await reapUntil(ring, want - got.length)));
    return got.sort((p, q) => p[0] - q[0]);
  }

  test('batch run: registered buffers by (id, offset, length), one or several iovecs, one call', async () => {
    const path = join(scratch, 'batch.img');
    writeFileSync(path, Buffer.alloc(65536));
    const fd = openSync(path, 'r+');
    const ring = addon.ioRingCreate(8);
    const area = new ArrayBuffer(16384);
    const id = ring.registerBuffer(area);
    new Uint8Array(area, 0, 4096).fill(0xa1);
    new Uint8Array(area, 4096, 512).fill(0xb2);
    // write [0, 4096) at 0 (one buffer: IORING_OP_WRITE) and [4096, +512) + [0, +100) at 8192 (writev)
    const written = await runBatch(
      ring,
      [
        [1, fd, 0, 3, 1, id, 0, 4096],
        [1, fd, 8192, 4, 2, id, 4096, 512, id, 0, 100],
      ],
      2,
    );
    expect(written).toEqual([
      [3, 4096],
      [4, 612],
    ]);
    const file = readFileSync(path);
    expect(file.subarray(0, 4096).every((v) => v === 0xa1)).toBe(true);
    expect(file.subarray(8192, 8704).every((v) => v === 0xb2)).toBe(true);
    expect(file.subarray(8704, 8804).every((v) => v === 0xa1)).toBe(true);
    // read them back into the second half of the area, the second time
    // offloaded to an io-wq worker (kind 2: never completes inline)
    const read = await runBatch(ring, [[0, fd, 8192, 9, 1, id, 8192, 612]], 1);
    expect(read).toEqual([[9, 612]]);
    new Uint8Array(area, 8192, 612).fill(0);
    const stage = Float64Array.from([2, fd, 8192, 10, 1, id, 8192, 612]);
    const out = new Int32Array(2 + 2 * 4);
    ring.run(stage, 1, out);
    // Punted to an io-wq worker even though the page cache holds it. The
    // worker may still post its completion before run() reaps (a race on a
    // busy machine), so the completion is taken from wherever it shows up.
    expect(out[0]).toBeLessThanOrEqual(1);
    const done = out[0] === 1 ? [[out[2], out[3]]] : await reapUntil(ring, 1);
    expect(done).toEqual([[10, 612]]);
    expect(Buffer.from(area, 8192, 512).every((v) => v === 0xb2)).toBe(true);
    expect(Buffer.from(area, 8704, 100).every((v) => v === 0xa1)).toBe(true);
    ring.close();
    closeSync(fd);
  });

  test('batch run: an invalid kind, fd or position fails only its own operation (-EINVAL), the rest of the batch runs', async () => {
    const fd = openSync(join(scratch, 'batch3.img'), 'w+');
    writeFileSync(fd, Buffer.alloc(8192, 0x42));
    const ring = addon.ioRingCreate(8);
    const area = new ArrayBuffer(4096);
    const id = ring.registerBuffer(area);
    const results = await runBatch(
      ring,
      [
        [0, fd, 2 ** 53, 1, 1, id, 0, 8], // offset past 2^53 - 1 (a corrupt qcow2 L2 entry)
        [0, fd, -512, 2, 1, id, 0, 8], // negative
        [0, fd, Number.NaN, 3, 1, id, 0, 8],
        [4, fd, 0, 4, 1, id, 0, 8], // unknown kind
        [0, -1, 0, 5, 1, id, 0, 8], // fd out of range
        [0, fd, 0, 6, 1, id, 0, 4096], // fine, same batch
        [0, 987654, 0, 7, 1, id, 0, 8], // closed fd: the kernel's own per-op -EBADF
      ],
      7,
    );
    expect(results).toEqual([
      [1, -22],
      [2, -22],
      [3, -22],
      [4, -22],
      [5, -22],
      [6, 4096],
      [7, -9],
    ]);
    expect(Buffer.from(area).every((v) => v === 0x42)).toBe(true);
    ring.close();
    closeSync(fd);
  });

  test('batch run: memory outside a registered buffer, an unknown id or a detached buffer fail with EFAULT, not a stray access', async () => {
    const fd = openSync(join(scratch, 'batch2.img'), 'w+');
    writeFileSync(fd, Buffer.alloc(8192));
    const ring = addon.ioRingCreate(8);
    const area = new ArrayBuffer(4096);
    const id = ring.registerBuffer(area);
    const detachable = new ArrayBuffer(4096);
    const gone = ring.registerBuffer(detachable);
    structuredClone(detachable, { transfer: [detachable] }); // detaches it
    const freed = ring.registerBuffer(new ArrayBuffer(8));
    ring.unregisterBuffer(freed);
    const results = await runBatch(
      ring,
      [
        [0, fd, 0, 1, 1, id, 4000, 200], // runs past the end
        [0, fd, 0, 2, 1, id + 100, 0, 8], // never registered
        [0, fd, 0, 3, 1, gone, 0, 8], // detached
        [0, fd, 0, 4, 1, freed, 0, 8], // unregistered
        [0, fd, 0, 5, 1, id, 0, 4096], // fine
      ],
      5,
    );
    expect(results).toEqual([
      [1, -14],
      [2, -14],
      [3, -14],
      [4, -14],
      [5, 4096],
    ]);
    // a record that cannot be delimited is a caller bug: thrown, nothing submitted
    const out = new Int32Array(8);
    expect(() => ring.run(Float64Array.from([0, fd, 0, 1, 3, id, 0, 8]), 1, out)).toThrow(
      expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }),
    );
    expect(() => ring.run(new Float64Array(8), 4, out)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => ring.registerBuffer(new SharedArrayBuffer(8) as unknown as ArrayBuffer)).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }),
    );
    ring.close();
    expect(() => ring.run(new Float64Array(0), 0, out)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    closeSync(fd);
  });

  test('tryNow: a page-cache hit is read at once; a miss is refused with EAGAIN, never waited for', () => {
    const path = join(scratch, 'nowait.img');
    // Written with O_DIRECT: the data is on disk but not in the page cache.
    execFileSync('dd', ['if=/dev/urandom', `of=${path}`, 'bs=4096', 'count=4', 'oflag=direct', 'status=none']);
    const fd = openSync(path, 'r');
    const ring = addon.ioRingCreate(2);
    const area = new ArrayBuffer(8192);
    const id = ring.registerBuffer(area);
    expect(() => ring.tryNow()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_STATE' }));
    const stage = new Float64Array(16);
    ring.setNowStage(stage);
    const tryNow = (record: number[]) => {
      stage.set(record);
      return ring.tryNow();
    };
    const record = (position: number, offset: number, length: number) => [0, fd, position, 0, 1, id, offset, length];
    expect(tryNow(record(4096, 0, 4096))).toBe(-11); // EAGAIN: would have to wait for the disk
    expect(Buffer.from(area, 0, 4096).every((v) => v === 0)).toBe(true);
    const onDisk = readFileSync(path); // now cached
    expect(tryNow([0, fd, 4096, 0, 2, id, 0, 100, id, 4096, 3996])).toBe(4096);
    expect(Buffer.concat([Buffer.from(area, 0, 100), Buffer.from(area, 4096, 3996)]).equals(onDisk.subarray(4096, 8192))).toBe(true);
    expect(tryNow(record(16384 - 512, 0, 4096))).toBe(512); // short at the end of the file
    expect(tryNow(record(0, 8000, 4096))).toBe(-14); // EFAULT: past the registered buffer
    expect(tryNow([0, fd, 0, 0, 1, id + 7, 0, 8])).toBe(-14); // unknown id
    expect(() => tryNow([0, fd, 0, 0, 5, id, 0, 8])).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' })); // 5 iovecs do not fit
    // A bigger stage replaces the first one.
    const bigger = Float64Array.from([0, fd, 0, 0, 1, id, 0, 4096, ...new Array<number>(30).fill(0)]);
    ring.setNowStage(bigger);
    expect(ring.tryNow()).toBe(4096);
    expect(() => ring.setNowStage(new Int32Array(8) as unknown as Float64Array)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    ring.close();
    expect(() => ring.tryNow()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    closeSync(fd);
  });

  test('writeNow: a blocking write of the staged record, timed on the coarse monotonic clock', () => {
    const path = join(scratch, 'writenow.img');
    writeFileSync(path, Buffer.alloc(16384));
    const fd = openSync(path, 'r+');
    const ring = addon.ioRingCreate(2);
    const area = new ArrayBuffer(8192);
    Buffer.from(area).fill(0x6b);
    const id = ring.registerBuffer(area);
    const stage = new Float64Array(16);
    ring.setNowStage(stage);
    stage.set([1, fd, 4096, 0, 1, id, 0, 4096]);
    expect(() => ring.writeNow()).toThrow(expect.objectContaining({ code: 'ERR_INVALID_STATE' })); // no clock array registered
    const clock = new Float64Array(2).fill(-1);
    ring.setNowStage(stage, clock);
    const before = addon.monotonicCoarseMs();
    expect(ring.writeNow()).toBe(4096);
    expect(clock[0]).toBeGreaterThanOrEqual(before);
    expect(clock[1]).toBeGreaterThanOrEqual(0);
    expect(clock[0]! + clock[1]!).toBeLessThanOrEqual(addon.monotonicCoarseMs());
    const disk = readFileSync(path);
    expect([disk.subarray(0, 4096).every((v) => v === 0), disk.subarray(4096, 8192).every((v) => v === 0x6b), disk.subarray(8192).every((v) => v === 0)]).toEqual([true, true, true]);
    stage.set([0, fd, 0, 0, 1, id, 0, 4096]); // a read
    expect(() => ring.writeNow()).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    stage.set([1, fd, 0, 0, 1, id, 8000, 4096]); // past the registered buffer
    expect(ring.writeNow()).toBe(-14);
    const readOnly = openSync(path, 'r');
    stage.set([1, readOnly, 0, 0, 1, id, 0, 4096]);
    expect(ring.writeNow()).toBe(-9); // EBADF: not open for writing
    closeSync(readOnly);
    expect(() => ring.setNowStage(stage, new Float64Array(1))).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    ring.close();
    expect(() => ring.writeNow()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    closeSync(fd);
  });

  test('copyBytes: copies between views at byte offsets (overlap too), refuses anything outside either view', () => {
    const source = Buffer.from('0123456789abcdef');
    const target = Buffer.alloc(16, 0x2e);
    addon.copyBytes(target, 3, source, 10, 4);
    expect(target.toString('latin1')).toBe('...abcd.........');
    // Views with a byteOffset, and other element types: offsets stay in bytes.
    const wide = new Float64Array(4);
    addon.copyBytes(wide, 8, source.subarray(8), 0, 8);
    expect(Buffer.from(wide.buffer).toString('latin1', 8, 16)).toBe('89abcdef');
    addon.copyBytes(new DataView(target.buffer, target.byteOffset + 8, 8), 0, source, 0, 2);
    expect(target.toString('latin1', 8, 10)).toBe('01');
    // Overlapping ranges of one buffer behave like memmove.
    const same = Buffer.from('abcdefgh');
    addon.copyBytes(same, 2, same, 0, 6);
    expect(same.toString('latin1')).toBe('ababcdef');
    addon.copyBytes(target, 16, source, 16, 0); // empty, at both ends: nothing to do
    const before = Buffer.from(target);
    for (const [to, from, length] of [
      [13, 0, 4], // past the target's end
      [0, 13, 4], // past the source's end
      [-1, 0, 1],
      [0, 0.5, 1],
      [0, 0, Number.NaN],
      [0, 0, 2 ** 60],
    ]) {
      expect(() => addon.copyBytes(target, to!, source, from!, length!)).toThrow(RangeError);
    }
    expect(() => addon.copyBytes('x' as unknown as Buffer, 0, source, 0, 1)).toThrow(TypeError);
    expect(() => addon.copyBytes(target, 0, new ArrayBuffer(4) as unknown as Buffer, 0, 1)).toThrow(TypeError);
    expect(target.equals(before)).toBe(true);
  });

  test('monotonicCoarseMs: CLOCK_MONOTONIC to within a tick or so, never going back', () => {
    const fine = () => Number(process.hrtime.bigint()) / 1e6; // CLOCK_MONOTONIC
    const samples: number[] = [];
    for (let i = 0; i < 1000; i++) samples.push(addon.monotonicCoarseMs());
    for (let i = 1; i < samples.length; i++) expect(samples[i]).toBeGreaterThanOrEqual(samples[i - 1]!);
    // The coarse clock is CLOCK_MONOTONIC as of the last tick (1-10 ms ago):
    // never ahead of a fine read after it, never more than a tick behind
    // one before it (a preemption in between only makes it later).
    const before = fine();
    const coarse = addon.monotonicCoarseMs();
    const after = fine();
    expect(coarse).toBeLessThanOrEqual(after);
    expect(coarse).toBeGreaterThan(before - 20);
  });

  test('a full submission queue says false; errors come back as -errno', async () => {
    const ring = addon.ioRingCreate(2);
    const fd = openSync(join(scratch, 'ring2.img'), 'w+');
    closeSync(fd); // now a closed descriptor number
    expect(ring.prepReadv(fd, [Buffer.alloc(8)], 0, 1)).toBe(true);
    expect(ring.prepReadv(fd, [Buffer.alloc(8)], 0, 2)).toBe(true);
    expect(ring.prepReadv(fd, [Buffer.alloc(8)], 0, 3)).toBe(false);
    expect(ring.submit()).toBe(2);
    expect(ring.submit()).toBe(0); // nothing left to submit
    const results = await reapUntil(ring, 2);
    expect(results.map((r) => r[1])).toEqual([-9, -9]); // EBADF
    ring.close();
  });

  test('argument checks and use after close', () => {
    expect(() => addon.ioRingCreate(0)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    const ring = addon.ioRingCreate(2);
    expect(() => ring.prepReadv(0, [], 0, 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => ring.prepReadv(0, [Buffer.alloc(1)], -1, 1)).toThrow(expect.objectContaining({ code: 'ERR_OUT_OF_RANGE' }));
    expect(() => ring.prepReadv(0, [{} as Buffer], 0, 1)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    expect(() => ring.reap(new Uint32Array(2) as unknown as Int32Array)).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARG_TYPE' }));
    ring.watch(
      () => {},
      () => {},
    );
    expect(() => ring.watch(() => {}, () => {})).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    ring.ref(false);
    ring.close();
    ring.close();
    expect(() => ring.submit()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(() => ring.reap(new Int32Array(2))).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });
});

describe('per-command methods bound to their object', () => {
  // tryNow, run and kick are own properties whose function carries its C++
  // object (no napi_unwrap per call). The function must keep that object
  // alive: kept alone and called after collections, it still answers.

  test.skipIf(!ringOrSkip())('a detached tryNow keeps its io_ring alive and ignores its receiver', () => {
    const take = (): (() => number) => {
      const ring = addon.ioRingCreate(2);
      const id = ring.registerBuffer(new ArrayBuffer(4096));
      const stage = new Float64Array(8);
      ring.setNowStage(stage);
      stage.set([0, 0, 0, 0, 1, id + 1, 0, 8]); // an unknown buffer id: EFAULT, no syscall
      return ring.tryNow;
    };
    const tryNow = take();
    collectGarbage();
    expect(tryNow.call(undefined)).toBe(-14);
    // The ring is reachable only through the function now.
    const owners = Object.getOwnPropertySymbols(tryNow).map((key) => (tryNow as unknown as Record<symbol, unknown>)[key]);
    expect(owners).toHaveLength(1);
    const ring = owners[0] as ReturnType<typeof addon.ioRingCreate>;
    expect(Object.keys(ring)).not.toContain('tryNow'); // not enumerable
    ring.close();
    expect(() => tryNow()).toThrow(expect.objectContaining({ code: 'EBADF' }));
  });

  test('a detached kick still signals its peer; after close it throws EBADF', async () => {
    const [a, b] = sharedPair(4096);
    const kick = b.kick;
    const event = nextEvent(a);
    kick.call(null);
    expect(await event).toBe(4);
    b.close();
    expect(() => kick()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    a.close();
  });
});
