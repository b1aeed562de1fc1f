import { describe, expect, it } from 'vitest';
import { finishesWithin } from '../../src/daemon/finishes-within.js';

describe('finishesWithin', () => {
  it('true when the work settles in time, false when it does not', async () => {
    expect(await finishesWithin(Promise.resolve(), 1000)).toBe(true);
    expect(await finishesWithin(new Promise(() => undefined), 20)).toBe(false);
  });

  it('rethrows a rejection in time; hands a late one to onLateError instead of leaving it unhandled', async () => {
    await expect(finishesWithin(Promise.reject(new Error('closed badly')), 1000)).rejects.toThrow('closed badly');
    const late: unknown[] = [];
    let fail!: (err: Error) => void;
    const work = new Promise((_, reject) => (fail = reject));
    expect(await finishesWithin(work, 20, (err) => late.push(err))).toBe(false);
    fail(new Error('too late'));
    await new Promise((r) => setImmediate(r));
    expect(late).toEqual([new Error('too late')]);
  });
});
