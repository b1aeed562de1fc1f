/**
 * How a test starts a TypeScript child script many times over: from the
 * JavaScript `npm run build` made of it when that build is current, else
 * through tsx. Plain node starts such a child in ~0.22 s here, tsx in ~0.85 s
 * (it transforms every imported module on each start), which adds up over
 * the crash test's 420 kills.
 *
 * "Current" means the built file is newer than every source it may run:
 * src/, handlers/ and the script's own folder (test files aside). A stale
 * build falls back to tsx, so running vitest without building never tests
 * old code.
 */
import { readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '..');

function newestSourceMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSourceMtime(path));
    else if (/\.m?ts$/.test(entry.name) && !entry.name.endsWith('.test.ts')) newest = Math.max(newest, statSync(path).mtimeMs);
  }
  return newest;
}

/** The built counterpart of a source under the repository: dist/<same path>, .ts -> .js, .mts -> .mjs. */
export function builtPathOf(source: string): string {
  return join(ROOT, 'dist', relative(ROOT, source)).replace(/\.ts$/, '.js').replace(/\.mts$/, '.mjs');
}

/** node arguments (before the script's own) that run `source`: the current build, or tsx. */
export function childScriptArgs(source: string): { args: string[]; built: boolean } {
  const built = builtPathOf(source);
  let builtMtime: number;
  try {
    builtMtime = statSync(built).mtimeMs;
  } catch {
    return { args: ['--import', 'tsx', source], built: false };
  }
  const sources = Math.max(...[join(ROOT, 'src'), join(ROOT, 'handlers'), dirname(source)].map(newestSourceMtime));
  return builtMtime > sources ? { args: [built], built: true } : { args: ['--import', 'tsx', source], built: false };
}
