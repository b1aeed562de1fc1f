/**
 * CheckConfig: would the daemon accept this dev_config at enable? Runs the
 * same code the daemon runs when a device appears (openDevConfig: parse,
 * handler resolution, handler options, the confined opener, the image
 * header checks) but read-only and through an opener that refuses every
 * open for writing, so checking never changes an image, never creates a
 * file and never takes a LUN's place. The store opened for the check is
 * closed again at once.
 *
 * What the check cannot know: the LUN size. targetcli asks before it
 * creates the device, and the kernel hands the size to the runner only at
 * enable. The check therefore opens with the size unknown and, when that
 * fails with a configuration error, once more with one block as the size:
 * a config that is valid for some LUN size passes (`ram/` gets its size
 * from the kernel, like tcmu-runner's handlers). A file that does not
 * exist yet but carries `;create=1` is checked for where it would be
 * created (check-creatable.ts) instead of being created.
 */
import type { Logger } from 'pino';
import { ConfigError } from '../backstore/config-error.js';
import { type FileOpener, type OpenFileOptions, requestedPath } from '../backstore/confine.js';
import { booleanOption } from '../backstore/options.js';
import { openDevConfig, parseDevConfig, type ParsedDevConfig } from '../backstore/registry.js';
import type { LunStore } from '../backstore/types.js';
import { whyNotCreatable } from './check-creatable.js';

export interface CheckResult {
  ok: boolean;
  /** 'success', or why the daemon would refuse the device (the text targetcli prints). */
  reason: string;
}

export interface CheckOptions {
  /** The daemon's confined opener (its allowed_dirs). */
  files: FileOpener;
  log: Logger;
  /** The subtype the caller asked about (one D-Bus object per handler); the dev_config must name it. */
  subtype?: string;
  /** Logical block size to assume (the kernel's default hw_block_size is 512). */
  blockSize?: number;
  /** Give up on an open that takes longer (a hung network filesystem); default 20 s, under D-Bus's 25 s call timeout. */
  timeoutMs?: number;
}

/** Reasons go to a terminal through targetcli: keep them one screen long. */
const MAX_REASON = 1000;

function reasonOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.length > MAX_REASON ? `${message.slice(0, MAX_REASON)}...` : message;
}

/**
 * The daemon's opener, minus every way to write: opens for writing or
 * creating are refused (EROFS), removals too. Paths that turned out not to
 * exist are recorded, so the caller can tell "the image is missing" from
 * any other refusal without parsing messages.
 */
function checkingOpener(files: FileOpener, missing: Set<string>): FileOpener {
  const refuseWriting = (path: string, opts: OpenFileOptions | undefined) => {
    if (opts?.write || opts?.create) {
      throw Object.assign(new Error(`${path}: a configuration check opens nothing for writing`), { code: 'EROFS' });
    }
  };
  const noting = async <T>(path: string, opts: OpenFileOptions | undefined, open: () => Promise<T>): Promise<T> => {
    try {
      return await open();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') missing.add(requestedPath(path, opts?.relativeTo));
      throw err;
    }
  };
  return {
    allowedDirs: files.allowedDirs,
    async openFd(path, opts) {
      refuseWriting(path, opts);
      return noting(path, opts, () => files.openFd(path, opts));
    },
    async openHandle(path, opts) {
      refuseWriting(path, opts);
      return noting(path, opts, () => files.openHandle(path, opts));
    },
    canonicalPath(path, opts) {
      return noting(path, opts, () => files.canonicalPath(path, opts));
    },
    async removeFile(path) {
      throw Object.assign(new Error(`${path}: a configuration check removes nothing`), { code: 'EROFS' });
    },
  };
}

async function withTimeout(open: Promise<LunStore>, timeoutMs: number, devConfig: string): Promise<LunStore> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`checking ${devConfig} took longer than ${timeoutMs} ms (a hung filesystem?)`)), timeoutMs);
  });
  try {
    return await Promise.race([open, expired]);
  } catch (err) {
    // The late open still owns a store: close it when it arrives.
    open.then((store) => store.close(), () => undefined).catch(() => undefined);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

async function tryOpen(devConfig: string, size: number | undefined, files: FileOpener, opts: CheckOptions): Promise<unknown> {
  // Handlers' own warnings during a check (a size hint smaller than an image) are not news.
  const log = opts.log.child({ check: devConfig }, { level: 'error' });
  try {
    const store = await withTimeout(
      openDevConfig(devConfig, { size, blockSize: opts.blockSize ?? 512, readOnly: true, log, files }),
      opts.timeoutMs ?? 20_000,
      devConfig,
    );
    await store.close();
    return undefined;
  } catch (err) {
    return err ?? new Error('open failed');
  }
}

/** `file//path;create=1` whose file is missing: the open got as far as the image, which enable would create. */
async function creatableVerdict(parsed: ParsedDevConfig, missing: ReadonlySet<string>, files: FileOpener): Promise<CheckResult | undefined> {
  if (parsed.handler !== 'file' || !missing.has(parsed.config)) return undefined;
  let create: boolean;
  try {
    create = booleanOption('file', parsed.options, 'create', false);
  } catch {
    return undefined; // the open's own error names the bad value
  }
  if (!create) return undefined;
  const why = await whyNotCreatable(parsed.config, files.allowedDirs);
  return why === null ? { ok: true, reason: `success (${parsed.config} will be created when the LUN is enabled)` } : { ok: false, reason: why };
}

/** Never throws: every refusal is a CheckResult with the reason. */
export async function checkDevConfig(devConfig: string, opts: CheckOptions): Promise<CheckResult> {
  let parsed: ParsedDevConfig;
  try {
    parsed = parseDevConfig(devConfig);
  } catch (err) {
    return { ok: false, reason: reasonOf(err) };
  }
  if (opts.subtype !== undefined && parsed.handler !== opts.subtype) {
    return { ok: false, reason: `dev_config "${devConfig}" is for handler "${parsed.handler}", but was checked by the "${opts.subtype}" handler` };
  }
  const missing = new Set<string>();
  const files = checkingOpener(opts.files, missing);
  const first = await tryOpen(devConfig, undefined, files, opts);
  if (first === undefined) return { ok: true, reason: 'success' };
  const creatable = await creatableVerdict(parsed, missing, opts.files);
  if (creatable) return creatable;
  // Only a configuration error can hinge on the unknown size; a refused path or a broken image cannot.
  if (first instanceof ConfigError) {
    const second = await tryOpen(devConfig, opts.blockSize ?? 512, files, opts);
    if (second === undefined) return { ok: true, reason: 'success (the LUN size comes from the kernel at enable)' };
  }
  return { ok: false, reason: reasonOf(first) };
}
