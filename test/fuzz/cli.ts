/**
 * `scripts/fuzz [TARGET...] [--long] [--cases N] [--seed S] [--first K]`:
 * runs fuzz targets and prints each one's outcome table; exits 1 on any
 * finding. Replay one case with `--first K --cases 1 --seed S`.
 */
import { formatReport, runFuzz } from './lib/driver.js';
import { targets } from './targets/index.js';

const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  argv.splice(i, 2);
  return v;
};
const seed = Number(flag('--seed') ?? 1);
const casesArg = flag('--cases');
const first = Number(flag('--first') ?? 0);
const longIdx = argv.indexOf('--long');
const long = longIdx >= 0;
if (long) argv.splice(longIdx, 1);
const names = argv.length ? argv : Object.keys(targets).filter((n) => n !== 'self-check');
let findings = 0;
for (const name of names) {
  const loader = targets[name];
  if (!loader) {
    console.error(`unknown fuzz target '${name}'; known: ${Object.keys(targets).join(', ')}`);
    process.exit(2);
  }
  const t = await loader();
  const cases = casesArg ? Number(casesArg) : long ? t.cases.long : t.cases.short;
  const report = await runFuzz({
    target: name,
    seed,
    cases,
    first,
    onFinding: (f) => console.error(`FINDING ${name} case ${f.case} (seed ${seed}) ${f.kind}: ${f.message}`),
  });
  console.log(formatReport(report));
  findings += report.findings.length;
}
process.exit(findings > 0 ? 1 : 0);
