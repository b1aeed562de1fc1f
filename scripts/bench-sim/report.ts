/**
 * What the simulator benchmarks share: their command-line options, the
 * statistics they print, the column layout of their tables, and where the
 * table goes (stdout and scripts/results/).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ARGS = process.argv.slice(2);

/** The value after `--name` on the command line, if given. */
export function option(name: string): string | undefined {
  const i = ARGS.indexOf(name);
  return i >= 0 ? ARGS[i + 1] : undefined;
}

/** Whether the flag `--name` is on the command line. */
export function flag(name: string): boolean {
  return ARGS.includes(name);
}

export const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** A ratio as a signed change: 0.974 -> "-2.6%". */
export const signedPercent = (ratio: number) => `${ratio >= 1 ? '+' : ''}${((ratio - 1) * 100).toFixed(1)}%`;

/** Header, rule and rows padded to common widths; the first column left-aligned, the others right-aligned. */
export function columns(header: readonly string[], rows: readonly string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (cells: readonly string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(header), fmt(header.map((_, i) => '-'.repeat(widths[i]!))), ...rows.map(fmt)];
}

/** Print `table` and write it to --out, or to scripts/results/`file` of this checkout. */
export function writeReport(file: string, table: string): void {
  const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
  const out = option('--out') ?? join(root, 'scripts', 'results', file);
  process.stdout.write(table);
  mkdirSync(dirname(out), { recursive: true });
  writeFileSync(out, table);
}
