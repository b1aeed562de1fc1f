/**
 * Finding handler code: built-ins by directory name under handlers/, user
 * handlers by module path or npm package name. Every failure names the
 * module and what was wrong with it, because the operator reading the log
 * is usually the one who wrote the handler.
 */
import { existsSync, readdirSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ConfigError } from './config-error.js';
import { type FileOpener, unconfinedOpener } from './confine.js';
import { validateControl } from './control.js';
import type { Handler } from './types.js';

/**
 * handlers/ relative to this compiled module: src/backstore -> ../../handlers
 * both in the source tree (vitest, tsx) and in dist/ (dist/src/backstore ->
 * dist/handlers). Adding a directory with an index is enough to add a built-in.
 */
const HANDLERS_DIR = fileURLToPath(new URL('../../handlers/', import.meta.url));

/** index.js when compiled; index.ts when running from source under vitest or tsx. */
const INDEX_FILES = ['index.js', 'index.ts'];

/** Directories named example-* are documentation, never served as a subtype. */
const EXAMPLE_PREFIX = 'example-';

function builtinIndex(name: string): string | undefined {
  for (const file of INDEX_FILES) {
    const path = `${HANDLERS_DIR}${name}/${file}`;
    if (existsSync(path)) return path;
  }
  return undefined;
}

/** Names of the built-in handlers present in this build (sorted). */
export function builtinHandlerNames(): string[] {
  if (!existsSync(HANDLERS_DIR)) return [];
  return readdirSync(HANDLERS_DIR, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && !entry.name.startsWith(EXAMPLE_PREFIX) && builtinIndex(entry.name))
    .map((entry) => entry.name)
    .sort();
}

/** Check that `value` has the Handler shape; `source` names where it came from. */
export function validateHandler(value: unknown, source: string): Handler {
  if (value === null || typeof value !== 'object') {
    throw new ConfigError(`${source}: the handler export is ${value === null ? 'null' : typeof value}, expected an object with "name" and "open"`);
  }
  const candidate = value as Partial<Record<keyof Handler, unknown>>;
  if (typeof candidate.name !== 'string' || candidate.name === '') {
    throw new ConfigError(`${source}: the handler has no "name" (a non-empty string)`);
  }
  if (typeof candidate.open !== 'function') {
    throw new ConfigError(`${source}: handler "${candidate.name}" has no "open" function`);
  }
  if (candidate.layer !== undefined && typeof candidate.layer !== 'boolean') {
    throw new ConfigError(`${source}: handler "${candidate.name}" has a non-boolean "layer" (${typeof candidate.layer})`);
  }
  if (candidate.control !== undefined) validateControl(candidate.control, `${source}: handler "${candidate.name}"`);
  return value as Handler;
}

/** The handler a module exports: its default export, else a named export `handler`. */
export function handlerFromModule(mod: Record<string, unknown>, source: string): Handler {
  if (mod.default !== undefined) return validateHandler(mod.default, `${source} (default export)`);
  if (mod.handler !== undefined) return validateHandler(mod.handler, `${source} (export "handler")`);
  throw new ConfigError(`${source}: exports neither a default handler nor a named export "handler"`);
}

function isNotFound(err: unknown, url: string): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  if (code !== 'ERR_MODULE_NOT_FOUND' && code !== 'MODULE_NOT_FOUND') return false;
  // A module that exists but imports something missing must report THAT, not "unknown handler".
  const message = String((err as Error).message);
  const quoted = (text: string) => message.includes(`'${text}'`) || message.includes(`"${text}"`);
  return quoted(url) || quoted(fileURLToPathSafe(url));
}

function fileURLToPathSafe(url: string): string {
  return url.startsWith('file:') ? fileURLToPath(url) : url;
}

async function importModule(specifier: string, source: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(specifier)) as Record<string, unknown>;
  } catch (err) {
    if (isNotFound(err, specifier)) return undefined;
    throw new ConfigError(`${source}: failed to load: ${(err as Error).message}`, { cause: err });
  }
}

/** Load a built-in by name; undefined when no handlers/<name> directory exists. */
export async function loadBuiltinHandler(name: string): Promise<Handler | undefined> {
  const index = builtinIndex(name);
  if (!index) return undefined;
  const source = `built-in handler "${name}" (${index})`;
  const mod = await importModule(pathToFileURL(index).href, source);
  if (!mod) throw new ConfigError(`${source}: the module could not be found`);
  return handlerFromModule(mod, source);
}

/** True when `specifier` names a file rather than a package. */
export function isModulePath(specifier: string): boolean {
  return specifier.startsWith('.') || isAbsolute(specifier) || specifier.startsWith('file:');
}

/**
 * The file URL to import for a module path: the module file is opened
 * through `files` (confined to the allowed directories) and imported by the
 * canonical path of what was opened, so a symlink cannot redirect it.
 * Undefined when the file does not exist.
 */
async function confinedModuleUrl(specifier: string, files: FileOpener): Promise<string | undefined> {
  const path = specifier.startsWith('file:') ? fileURLToPath(specifier) : resolve(specifier);
  try {
    return pathToFileURL(await files.canonicalPath(path)).href;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new ConfigError(`handler module "${specifier}": ${(err as Error).message}`, { cause: err });
  }
}

/**
 * Load a user handler from a file path (absolute, or relative to the current
 * directory) or an npm package name (resolved from tcmu-ts's own install).
 * A path is confined by `files` (the daemon's allowed directories).
 * Returns undefined if nothing by that name exists.
 */
export async function loadHandlerModule(specifier: string, files: FileOpener = unconfinedOpener): Promise<Handler | undefined> {
  const url = isModulePath(specifier) ? await confinedModuleUrl(specifier, files) : specifier;
  if (url === undefined) return undefined;
  const source = `handler module "${specifier}"`;
  const mod = await importModule(url, source);
  return mod && handlerFromModule(mod, source);
}
