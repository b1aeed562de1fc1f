/**
 * Backstore.maxInFlight: the core's queue (src/backstore/serialize.ts),
 * applied by toLunStore. A probe store counts the calls running in it and
 * records the order they start and settle in; it answers after a
 * pseudo-random number of event-loop turns, so completions interleave
 * differently from issue order (no wall-clock anywhere).
 */
import { describe, expect, it } from 'vitest';
import { afterTurns, seededRandom } from '../support/shuffled-settle.js';
import { StorageError } from '../../src/backstore/errors.js';
import { CallQueue, limitConcurrency } from '../../src/backstore/serialize.js';
import { toLunStore } from '../../src/backstore/lun-store.js';
import type { Backstore, CallOptions, Extent, WriteOptions, WriteZeroesOptions } from '../../src/backstore/types.js';
import { settle, waitFor } from '../tcmu/wait.js';

const BS = 512;

class ProbeStore implements Backstore {
  size = 1024 * BS;
  readonly blockSize = BS;
  readonly writeCache = true;
  readonly fua = true;
  active = 0;
  maxActive = 0;
  readonly started: string[] = [];
  readonly settled: string[] = [];
  /** Name of each call that ran while another call was running. */
  readonly overlapped: string[] = [];
  /** Calls that must wait for release() before settling. */
  readonly parked: (() => void)[] = [];
  park = false;
  private readonly nextRandom = seededRandom(7);

  constructor(readonly maxInFlight?: number) {}

  private run(name: string): Promise<void> {
    this.started.push(name);
    if (this.active > 0) this.overlapped.push(name);
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    return new Promise<void>((resolve) => {
      const finish = () => {
        this.active--;
        this.settled.push(name);
        resolve();
      };
      if (this.park) this.parked.push(finish);
      else afterTurns(this.nextRandom() % 4, finish);
    });
  }

  release(): void {
    for (const finish of this.parked.splice(0)) finish();
  }

  read(offset: number, _iov: readonly Buffer[], _opts?: CallOptions) {
    return this.run(`read@${offset / BS}`);
  }
  write(offset: number, _iov: readonly Buffer[], _opts: WriteOptions) {
    return this.run(`write@${offset / BS}`);
  }
  flush() {
    return this.run('flush');
  }
  discard(offset: number, _length: number) {
    return this.run(`discard@${offset / BS}`);
  }
  writeZeroes(offset: number, _length: number, _opts: WriteZeroesOptions) {
    return this.run(`zero@${offset / BS}`);
  }
  async blockStatus(offset: number, length: number): Promise<Extent[]> {
    await this.run(`status@${offset / BS}`);
    return [{ offset, length, state: 'mapped' }];
  }
  resize(newSize: number) {
    return this.run(`resize@${newSize / BS}`).then(() => {
      this.size = newSize;
    });
  }
  close() {
    return this.run('close');
  }
}

const block = [Buffer.alloc(BS)];

/** Issue `n` calls of every kind at once; returns their names in issue order. */
function flood(lun: ReturnType<typeof toLunStore>, n: number): { names: string[]; done: Promise<unknown[]> } {
  const names: string[] = [];
  const calls: unknown[] = [];
  for (let i = 0; i < n; i++) {
    const lba = i % 1024;
    switch (i % 6) {
      case 0:
        names.push(`read@${lba}`);
        calls.push(lun.read(lba * BS, block));
        break;
      case 1:
        names.push(`write@${lba}`);
        calls.push(lun.write(lba * BS, block, { fua: i % 12 === 1 }));
        break;
      case 2:
        names.push('flush');
        calls.push(lun.flush());
        break;
      case 3:
        names.push(`discard@${lba}`);
        calls.push(lun.discard(lba * BS, BS));
        break;
      case 4:
        names.push(`zero@${lba}`);
        calls.push(lun.writeZeroes(lba * BS, BS, { unmap: false }));
        break;
      default:
        names.push(`status@${lba}`);
        calls.push(lun.blockStatus(lba * BS, BS));
    }
  }
  return { names, done: Promise.all(calls) };
}

describe('maxInFlight: 1 (serial)', () => {
  it('a flood of 600 concurrent calls of every kind never overlaps, and calls start and settle in issue order', async () => {
    const probe = new ProbeStore(1);
    const lun = toLunStore(probe);
    const { names, done } = flood(lun, 600);
    await done;
    expect(probe.started).toHaveLength(600);
    expect(probe.overlapped).toEqual([]);
    expect(probe.maxActive).toBe(1);
    expect(probe.started).toEqual(names);
    expect(probe.settled).toEqual(names);
  });

  it('without the declaration the same flood overlaps (the probe can see it)', async () => {
    const probe = new ProbeStore();
    const { done } = flood(toLunStore(probe), 600);
    await done;
    expect(probe.maxActive).toBeGreaterThan(1);
    expect(probe.overlapped.length).toBeGreaterThan(0);
  });

  it('a synchronous serial store stays synchronous (no promise per call)', () => {
    const data = Buffer.alloc(8 * BS, 7);
    const store: Backstore = {
      size: data.length,
      blockSize: BS,
      maxInFlight: 1,
      read(offset, iov) {
        data.copy(iov[0]!, 0, offset, offset + iov[0]!.length);
      },
      close() {},
    };
    const lun = toLunStore(store);
    const buf = Buffer.alloc(BS);
    expect(lun.read(BS, [buf])).toBeUndefined();
    expect(buf.every((b) => b === 7)).toBe(true);
  });

  it('a synchronous throw reaches the caller and frees the queue', async () => {
    let calls = 0;
    const store: Backstore = {
      size: 8 * BS,
      blockSize: BS,
      maxInFlight: 1,
      read() {
        calls++;
        if (calls === 1) throw new StorageError('EIO', 'first read fails');
      },
      close() {},
    };
    const lun = toLunStore(store);
    expect(() => lun.read(0, block)).toThrow('first read fails');
    expect(lun.read(0, block)).toBeUndefined();
    expect(calls).toBe(2);
  });

  it('a rejected call frees the queue for the next one', async () => {
    let n = 0;
    const store: Backstore = {
      size: 8 * BS,
      blockSize: BS,
      maxInFlight: 1,
      read: async () => {
        if (n++ === 0) throw new StorageError('EIO', 'boom');
      },
      close() {},
    };
    const lun = toLunStore(store);
    const first = lun.read(0, block);
    const second = lun.read(0, block);
    await expect(first).rejects.toThrow('boom');
    await expect(second).resolves.toBeUndefined();
  });
});

describe('maxInFlight: n', () => {
  it('at most n calls run at once, and the limit is reached under a flood', async () => {
    const probe = new ProbeStore(3);
    const { names, done } = flood(toLunStore(probe), 300);
    await done;
    expect(probe.maxActive).toBe(3);
    expect(probe.started).toEqual(names); // FIFO start order
  });

  it('resize runs alone: it waits for running calls and holds back later ones', async () => {
    const probe = new ProbeStore(4);
    probe.park = true;
    const lun = toLunStore(probe);
    const before = [lun.read(0, block), lun.read(BS, block)];
    const resized = lun.resize(2048 * BS);
    const after = [lun.read(2 * BS, block), lun.write(3 * BS, block, { fua: false })];
    await settle();
    expect(probe.started).toEqual(['read@0', 'read@1']);
    probe.release();
    await waitFor(() => probe.started.length === 3, 'resize started');
    await settle();
    expect(probe.started[2]).toBe('resize@2048');
    expect(probe.active).toBe(1);
    probe.release();
    await resized;
    expect(lun.size).toBe(2048 * BS);
    await waitFor(() => probe.started.length === 5, 'later calls started');
    probe.release();
    await Promise.all([...before, ...after]);
    expect(probe.started.slice(3)).toEqual(['read@2', 'write@3']);
  });

  it('close waits for the calls before it', async () => {
    const probe = new ProbeStore(2);
    probe.park = true;
    const lun = toLunStore(probe);
    const reads = [lun.read(0, block), lun.read(BS, block)];
    const closed = lun.close();
    await settle();
    expect(probe.started).toEqual(['read@0', 'read@1']);
    probe.release();
    await waitFor(() => probe.started.length === 3, 'close started');
    probe.release();
    await Promise.all([...reads, closed]);
    expect(probe.overlapped).toEqual(['read@1']);
  });

  it('refuses a maxInFlight that is not a positive integer', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => toLunStore(Object.assign(new ProbeStore(), { maxInFlight: bad }))).toThrow(/maxInFlight must be a positive integer/);
    }
  });
});

describe('the queue and abort signals', () => {
  it('a waiting call whose signal fires leaves the queue at once and never reaches the store', async () => {
    const probe = new ProbeStore(1);
    probe.park = true;
    const lun = toLunStore(probe);
    expect(lun.abortable).toBe(true); // a queued store gets signals even without `abortable`
    const first = lun.read(0, block);
    const controller = new AbortController();
    const victim = lun.read(BS, block, { signal: controller.signal });
    const third = lun.read(2 * BS, block);
    const reason = new StorageError('ECANCELED', 'aborted by the test');
    controller.abort(reason);
    await expect(victim).rejects.toBe(reason);
    expect(probe.started).toEqual(['read@0']);
    probe.release();
    await first;
    await waitFor(() => probe.started.length === 2, 'third started');
    probe.release();
    await third;
    expect(probe.started).toEqual(['read@0', 'read@2']);
  });

  it('a call whose signal is already aborted is refused without reaching the store', async () => {
    const probe = new ProbeStore(1);
    const lun = toLunStore(probe);
    const controller = new AbortController();
    controller.abort(); // default reason: a DOMException, replaced by an ECANCELED StorageError
    await expect(lun.write(0, block, { fua: false, signal: controller.signal })).rejects.toMatchObject({ code: 'ECANCELED' });
    expect(probe.started).toEqual([]);
  });

  it('dropping the head of the queue lets an exclusive call behind it start', async () => {
    const store = new ProbeStore(1);
    store.park = true;
    const queue = new CallQueue(store, 1);
    const running = queue.call(false, undefined, store.read as never, 0, block);
    const controller = new AbortController();
    const victim = queue.call(false, controller.signal, store.read as never, BS, block);
    const resized = queue.call(true, undefined, store.resize as never, 4 * BS);
    expect(queue.queued).toBe(2);
    controller.abort();
    await expect(victim).rejects.toMatchObject({ code: 'ECANCELED' });
    expect(queue.queued).toBe(1);
    store.release();
    await running;
    await waitFor(() => store.started.length === 2, 'resize started');
    store.release();
    await resized;
    expect(store.started).toEqual(['read@0', 'resize@4']);
  });
});

describe('stores without maxInFlight', () => {
  it('are returned as they are: no wrapper on the hot path', () => {
    const probe = new ProbeStore();
    expect(limitConcurrency(probe)).toBe(probe);
    expect(toLunStore(probe).abortable).toBe(false);
    expect(toLunStore(Object.assign(new ProbeStore(), { abortable: true })).abortable).toBe(true);
  });

  it('a queued store still reads size and flags through getters that use private fields', async () => {
    class Private implements Backstore {
      #size = 16 * BS;
      readonly blockSize = BS;
      readonly maxInFlight = 1;
      get size() {
        return this.#size;
      }
      get thin() {
        return this.#size > 0;
      }
      read() {}
      discard() {}
      write() {}
      close() {}
    }
    const lun = toLunStore(new Private());
    expect(lun.size).toBe(16 * BS);
    expect(lun.thin).toBe(true);
  });
});
