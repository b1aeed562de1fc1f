// The driver must catch every kind of failure it promises to catch, and
// keep counting after one: each misbehaviour is planted in case 3 of the
// self-check target (FUZZ_SELF_CHECK is inherited by the worker).
import { afterEach, describe, expect, it } from 'vitest';
import { runFuzz } from './lib/driver.js';

afterEach(() => {
  delete process.env.FUZZ_SELF_CHECK;
});

describe('fuzz driver', () => {
  it('counts clean refusals and normal outcomes, reproducibly', async () => {
    const a = await runFuzz({ target: 'self-check', seed: 5, cases: 40 });
    const b = await runFuzz({ target: 'self-check', seed: 5, cases: 40 });
    expect(a.findings).toEqual([]);
    expect(a.cases).toBe(40);
    expect(a.outcomes.get('refused:ECORRUPT')).toBeGreaterThan(0);
    expect(a.outcomes.get('ok')).toBeGreaterThan(0);
    expect([...a.outcomes]).toEqual([...b.outcomes]);
  }, 60_000);

  for (const [mode, kind] of [
    ['hang', 'hang'],
    ['crash', 'crash'],
    ['memory', 'memory'],
    ['raw', 'raw-error'],
    ['unhandled', 'unhandled-rejection'],
  ] as const) {
    it(`reports a ${mode} as '${kind}' on case 3 and runs the rest`, async () => {
      process.env.FUZZ_SELF_CHECK = mode;
      const r = await runFuzz({ target: 'self-check', seed: 1, cases: 8, caseTimeoutMs: 3000 });
      expect(r.findings.map((f) => [f.case, f.kind])).toEqual([[3, kind]]);
      expect(r.cases).toBe(8);
    }, 60_000);
  }
});
