/**
 * The layering rules, enforced over the source tree by parsing every
 * file's import specifiers (static imports, `export ... from`, `import()`
 * and `require()` with a literal, type-only imports included):
 *   - nothing under src/ imports handlers/ (the registry finds handlers by
 *     directory; their control operations are reached through it);
 *   - no handler imports another handler, or src/tcmu/ (the TCMU ring is
 *     the core's business; shared I/O lives in src/io/ and src/native.ts).
 * A failure names the file and the import.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ROOT = resolve(import.meta.dirname, '..');

function sourceFiles(dir: string): string[] {
  return readdirSync(join(ROOT, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && /\.(m|c)?[jt]s$/.test(e.name) && !e.name.endsWith('.d.ts'))
    .map((e) => relative(ROOT, join(e.parentPath, e.name)));
}

/** Every module specifier `text` imports, as written. */
function importSpecifiers(text: string): string[] {
  return ts.preProcessFile(text, true, true).importedFiles.map((f) => f.fileName);
}

/** The repository path a relative specifier of `file` points at (undefined for packages and node: modules). */
function target(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith('.')) return undefined;
  return relative(ROOT, resolve(ROOT, dirname(file), specifier)).split(sep).join('/');
}

const under = (path: string, dir: string) => path === dir || path.startsWith(`${dir}/`);
const handlerOf = (path: string) => (under(path, 'handlers') ? path.split('/')[1] : undefined);

/** The rule `file` breaks by importing `specifier`, or undefined. */
function violation(file: string, specifier: string): string | undefined {
  const to = target(file, specifier);
  if (to === undefined) return undefined;
  if (under(file, 'src') && under(to, 'handlers')) return 'src/ must not import handlers/ (reach handlers through the registry)';
  const own = handlerOf(file);
  if (own === undefined) return undefined;
  if (under(to, 'src/tcmu')) return 'a handler must not import src/tcmu/';
  const other = handlerOf(to);
  if (other !== undefined && other !== own) return `a handler must not import another handler (handlers/${other})`;
  return undefined;
}

function violations(file: string, text: string): string[] {
  return importSpecifiers(text).flatMap((specifier) => {
    const rule = violation(file, specifier);
    return rule ? [`${file}: import "${specifier}": ${rule}`] : [];
  });
}

describe('layering', () => {
  it('the checker sees every import form and names file and import', () => {
    const text = [
      "import { a } from '../../handlers/qcow2/api.js';",
      "import type { B } from '../../handlers/file/index.js';",
      "export { c } from '../../handlers/ram/index.js';",
      "const d = await import('../../handlers/qcow2/control.js');",
      "import { fine } from '../backstore/types.js';",
      "import { pino } from 'pino';",
    ].join('\n');
    expect(violations('src/daemon/x.ts', text)).toEqual([
      'src/daemon/x.ts: import "../../handlers/qcow2/api.js": src/ must not import handlers/ (reach handlers through the registry)',
      'src/daemon/x.ts: import "../../handlers/file/index.js": src/ must not import handlers/ (reach handlers through the registry)',
      'src/daemon/x.ts: import "../../handlers/ram/index.js": src/ must not import handlers/ (reach handlers through the registry)',
      'src/daemon/x.ts: import "../../handlers/qcow2/control.js": src/ must not import handlers/ (reach handlers through the registry)',
    ]);
    expect(violations('handlers/qcow2/x.ts', "import { u } from '../file/file-store.js';\nimport { r } from '../../src/tcmu/ring-engine.js';\nimport { o } from './own.js';")).toEqual([
      'handlers/qcow2/x.ts: import "../file/file-store.js": a handler must not import another handler (handlers/file)',
      'handlers/qcow2/x.ts: import "../../src/tcmu/ring-engine.js": a handler must not import src/tcmu/',
    ]);
  });

  it('holds over src/ and handlers/', () => {
    const files = [...sourceFiles('src'), ...sourceFiles('handlers')];
    expect(files.length).toBeGreaterThan(50);
    expect(files).toContain('handlers/qcow2/index.ts');
    const found = files.flatMap((file) => violations(file.split(sep).join('/'), readFileSync(join(ROOT, file), 'utf8')));
    expect(found).toEqual([]);
  });
});
