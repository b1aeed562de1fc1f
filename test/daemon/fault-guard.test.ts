import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const CHILD = fileURLToPath(new URL('./fault-guard-child.ts', import.meta.url));

describe('process-level fault guard', () => {
  it('an unhandled rejection or uncaught exception fails the LUN it came from; another LUN keeps serving; unattributed faults are counted', () => {
    const out = execFileSync(process.execPath, ['--import', 'tsx', CHILD], { encoding: 'utf8', timeout: 60_000 });
    const got = JSON.parse(out.trim().split('\n').pop()!);
    expect(got.a).toBe('unhandled promise rejection: lost write-back');
    expect(got.c).toBe('uncaught exception: timer threw');
    expect(got.b).toBeNull();
    expect(got.bGood).toBe(50);
    expect(got.counts).toEqual({ attributed: 2, unattributed: 1 });
  });
});
