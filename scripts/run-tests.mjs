#!/usr/bin/env node
// `npm test`: the unit suite, then the real-kernel suite (QEMU), one after
// the other (the VM wants both cores). Prints one summary line a CI log
// reader understands ("tests: N passed, N failed, N skipped") and exits
// non-zero if anything failed or a suite could not run.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const projects = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'kernel'];
const dir = mkdtempSync(join(tmpdir(), 'tcmu-ts-tests-'));
const total = { passed: 0, failed: 0, skipped: 0 };
let broken = false;

for (const project of projects) {
  const report = join(dir, `${project}.json`);
  const run = spawnSync(
    'npx',
    ['vitest', 'run', '--project', project, '--reporter=default', '--reporter=json', `--outputFile.json=${report}`],
    { stdio: 'inherit' },
  );
  let json;
  try {
    json = JSON.parse(readFileSync(report, 'utf8'));
  } catch {
    console.error(`run-tests: the ${project} suite produced no report (exit ${run.status})`);
    broken = true;
    continue;
  }
  total.passed += json.numPassedTests;
  total.failed += json.numFailedTests;
  total.skipped += json.numPendingTests + json.numTodoTests;
  if (run.status !== 0 || json.numTotalTests === 0) broken = true;
  console.log(`${project}: ${json.numPassedTests} passed, ${json.numFailedTests} failed, ${json.numPendingTests} skipped`);
}
rmSync(dir, { recursive: true, force: true });
console.log(`tests: ${total.passed} passed, ${total.failed} failed, ${total.skipped} skipped`);
process.exit(broken || total.failed > 0 ? 1 : 0);
