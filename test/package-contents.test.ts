/**
 * What `npm pack` would publish: the compiled product (dist/src, dist/handlers),
 * the addon sources to build on install (native/, binding.gyp) and the docs;
 * never tests, benches, the kernel simulator, fuzz corpora, caches or build
 * output. Runs `npm pack --dry-run --json` over the built tree (`npm test`
 * builds first), so a stale or misplaced file in dist/ shows up here too.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';

const ROOT = fileURLToPath(new URL('..', import.meta.url));

interface PackEntry {
  path: string;
}

let files: string[] = [];
beforeAll(() => {
  if (!existsSync(join(ROOT, 'dist/src/cli/main.js'))) throw new Error('dist/ is not built: run `npm run build` before this test');
  // --ignore-scripts: listing the contents must not run prepack/prepare hooks.
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const packs = JSON.parse(out) as Array<{ files: PackEntry[] }>;
  files = packs[0]!.files.map((f) => f.path).sort();
}, 60_000);

/** Paths that must never ship, each with why. */
const forbidden: Array<[RegExp, string]> = [
  [/\.test\.(ts|js|d\.ts|js\.map|mts|mjs)$/, 'a test file'],
  [/^test\//, 'test sources'],
  [/^dist\/test\//, 'compiled tests or the kernel simulator'],
  [/^dist\/scripts\//, 'compiled scripts (simulator bench)'],
  // scripts/systemd/ is product: the unit and D-Bus policy `tcmu-ts service install` puts in place.
  [/^scripts\/(?!systemd\/)/, 'scripts, benches and their results'],
  [/(^|\/)bench[^/]*(\/|$)/i, 'a benchmark'],
  [/(^|\/)sim\//, 'the kernel simulator'],
  [/kernel-sim/, 'the kernel simulator'],
  [/(^|\/)fuzz(\/|$)/, 'the fuzz harness'],
  [/corp(us|ora)/i, 'a fuzz corpus'],
  [/(^|\/)\.cache\//, 'a cache'],
  [/(^|\/)node_modules\//, 'installed dependencies'],
  [/^build\//, 'the locally built addon (built on install instead)'],
  [/\.node$/, 'a compiled addon'],
  [/\.tsbuildinfo$/, 'tsc build info'],
  [/\.log$/, 'a log'],
  [/\.(qcow2|img|raw)$/, 'a disk image'],
];

describe('npm pack contents', () => {
  it('lists a plausible package (the dry run worked)', () => {
    expect(files.length).toBeGreaterThan(50);
    expect(files).toContain('package.json');
  });

  it.each(forbidden.map(([re, why]) => [why, re] as const))('excludes %s (%s)', (_why, re) => {
    expect(files.filter((f) => re.test(f))).toEqual([]);
  });

  it('ships the CLI entry point, the library entry and its types', () => {
    for (const f of ['dist/src/cli/main.js', 'dist/src/index.js', 'dist/src/index.d.ts']) expect(files, f).toContain(f);
  });

  it('ships every bundled handler, compiled', () => {
    const handlers = readdirSync(join(ROOT, 'handlers'), { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
    expect(handlers.length).toBeGreaterThan(0);
    for (const h of handlers) expect(files, `dist/handlers/${h}/index.js`).toContain(`dist/handlers/${h}/index.js`);
  });

  it('ships the systemd unit and the D-Bus policy that `tcmu-ts service install` installs, and nothing else from scripts/', () => {
    const shipped = readdirSync(join(ROOT, 'scripts/systemd')).map((f) => `scripts/systemd/${f}`).sort();
    expect(shipped.length).toBeGreaterThan(0);
    expect(files.filter((f) => f.startsWith('scripts/'))).toEqual(shipped);
  });

  it('ships the addon sources and binding.gyp, so `npm install` can build it', () => {
    const native = readdirSync(join(ROOT, 'native')).filter((f) => /\.(cc|h)$/.test(f));
    expect(native.some((f) => f.endsWith('.cc'))).toBe(true);
    for (const f of native) expect(files, `native/${f}`).toContain(`native/${f}`);
    expect(files).toContain('binding.gyp');
  });

  it('ships only product code under dist/: every compiled file comes from src/ or handlers/', () => {
    expect(files.filter((f) => f.startsWith('dist/') && !/^dist\/(src|handlers)\//.test(f))).toEqual([]);
  });

  it('ships no stale output: every compiled file has its TypeScript source', () => {
    const source = (f: string) => f.replace(/^dist\//, '').replace(/\.(d\.ts|js\.map|js)$/, '.ts');
    const stale = files.filter((f) => f.startsWith('dist/') && !existsSync(join(ROOT, source(f))));
    expect(stale, 'compiled files whose source is gone would ship: rebuild from a clean dist/ (rm -rf dist && npm run build)').toEqual([]);
  });
});
