// The short fuzz run of every target (the long run: `scripts/fuzz --long`).
// Each target runs in worker processes under the driver's watchdog; any
// finding (crash, hang, memory, raw error, unhandled rejection, or what the
// target itself detects) fails the test and is printed with its case index.
import { describe, expect, it } from 'vitest';
import { formatReport, runFuzz } from './lib/driver.js';
import { targets } from './targets/index.js';

describe('fuzz (short run)', () => {
  for (const name of Object.keys(targets)) {
    it(name, async () => {
      const t = await targets[name]!();
      const report = await runFuzz({ target: name, seed: 1, cases: t.cases.short });
      console.log(formatReport(report));
      expect(report.cases).toBe(t.cases.short);
      expect(report.findings).toEqual([]);
    }, 600_000);
  }
});
