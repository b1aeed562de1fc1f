/**
 * ReadGrace (handlers/qcow2/read-grace.ts): frees wait for the reads that
 * started before them, and only for those.
 */
import { describe, expect, it } from 'vitest';
import { ReadGrace } from '../../../handlers/qcow2/read-grace.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('ReadGrace', () => {
  it('resolves at once with no read in flight', async () => {
    const grace = new ReadGrace();
    await expect(grace.wait()).resolves.toBeUndefined();
  });

  it('waits for every read that entered before the wait, not for later ones', async () => {
    const grace = new ReadGrace();
    const early = [grace.enter(), grace.enter()];
    let done = false;
    const waiting = grace.wait().then(() => (done = true));
    const late = grace.enter(); // after the flip: sees the new mappings, not waited for
    grace.leave(early[0]!);
    await turn();
    expect(done).toBe(false);
    grace.leave(early[1]!);
    await waiting;
    expect(done).toBe(true);
    grace.leave(late);
  });

  it('runs waits one after another, each for its own older reads', async () => {
    const grace = new ReadGrace();
    const a = grace.enter();
    const first = grace.wait();
    const b = grace.enter();
    let secondDone = false;
    const second = grace.wait().then(() => (secondDone = true));
    grace.leave(b);
    await turn();
    expect(secondDone).toBe(false); // the first wait still holds: read a is in flight
    grace.leave(a);
    await first;
    await second;
    expect(secondDone).toBe(true);
  });
});
