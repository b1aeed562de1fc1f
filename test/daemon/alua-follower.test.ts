import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import type { LockHolder } from '../../src/backstore/types.js';
import { AluaFollower } from '../../src/daemon/alua-follower.js';
import { type FakeConfigfs, type FakeGroup, fakeAluaConfigfs, loopPort } from '../lio/fake-alua.js';

let fake: FakeConfigfs | undefined;
afterEach(() => {
  if (fake) rmSync(fake.root, { recursive: true, force: true });
  fake = undefined;
});

const log = pino({ level: 'silent' });
const stateOf = (group: string) => readFileSync(join(fake!.deviceDir, 'alua', group, 'alua_access_state'), 'utf8').trim();

function follower(group: Partial<FakeGroup>, holder: () => Promise<LockHolder> | undefined): AluaFollower {
  fake = fakeAluaConfigfs([{ name: 'gw-a', id: 1, ports: [loopPort('naa.5001405aa0000001', 1)], ...group }]);
  return new AluaFollower({ deviceDir: fake.deviceDir, targetRoot: fake.root, lockHolder: holder, log });
}

describe('AluaFollower', () => {
  it('makes the local group active/optimized while this gateway holds the lock, and reports it so', async () => {
    const f = follower({ state: 1 }, async () => 'this');
    const groups = await f.read();
    expect(stateOf('gw-a')).toBe('0');
    expect(groups.groups[0]).toMatchObject({ state: 0, status: 2 });
  });

  it('makes it active/non-optimized while another gateway holds the lock', async () => {
    const f = follower({ state: 0 }, async () => 'other');
    expect((await f.read()).groups[0]!.state).toBe(1);
    expect(stateOf('gw-a')).toBe('1');
  });

  it('leaves the state alone when nobody holds the lock, the medium has none, or the holder cannot be learned', async () => {
    for (const holder of [async () => 'none' as const, () => undefined, () => Promise.reject(new Error('cluster away'))]) {
      const f = follower({ state: 0 }, holder);
      expect((await f.read()).groups[0]!.state).toBe(0);
      expect(stateOf('gw-a')).toBe('0');
      rmSync(fake!.root, { recursive: true, force: true });
    }
  });

  it('never moves an admin state (standby) or a group without implicit transitions', async () => {
    let f = follower({ state: 2 }, async () => 'this');
    await f.read();
    expect(stateOf('gw-a')).toBe('2');
    rmSync(fake!.root, { recursive: true, force: true });
    f = follower({ state: 1, type: 'None' }, async () => 'this');
    await f.read();
    expect(stateOf('gw-a')).toBe('1');
  });

  it('a lock query that does not answer (the cluster away) does not hold INQUIRY: configfs as it is after answerWithinMs', async () => {
    fake = fakeAluaConfigfs([{ name: 'gw-a', id: 1, state: 1, ports: [loopPort('naa.5001405aa0000001', 1)] }]);
    let answer: (holder: LockHolder) => void = () => {};
    const f = new AluaFollower({ deviceDir: fake.deviceDir, targetRoot: fake.root, lockHolder: () => new Promise((r) => (answer = r)), answerWithinMs: 30, log });
    // Resolves while the lock query is still pending (a hang would time the test out).
    expect((await f.read()).groups[0]!.state).toBe(1);
    expect(stateOf('gw-a')).toBe('1');
    // The look goes on and sets the state once the cluster answers.
    answer('this');
    await f.sync();
    expect(stateOf('gw-a')).toBe('0');
  });

  it('concurrent reads share one pass (one lock query)', async () => {
    let queries = 0;
    const f = follower({ state: 1 }, async () => {
      queries++;
      return 'this';
    });
    const [a, b] = await Promise.all([f.read(), f.read()]);
    expect(a).toBe(b);
    expect(queries).toBe(1);
    f.onActivity();
    await f.read();
    expect(queries).toBe(2);
  });
});
