/**
 * Opening LUNs: resolve handler names to code, open a stack of layers bottom
 * up, and hand SCSI emulation a LunStore. This is the one entry point the
 * daemon uses (`openDevConfig`).
 */
import { ConfigError } from './config-error.js';
import { type FileOpener, openerOf } from './confine.js';
import { HANDLER_NAME, parseDevConfig } from './dev-config.js';
import { builtinHandlerNames, isModulePath, loadBuiltinHandler, loadHandlerModule, validateHandler } from './handler-loader.js';
import { composeLayers, errorInLayer } from './layers.js';
import { toLunStore } from './lun-store.js';
import { validateBackstore } from './validate-backstore.js';
import type { Backstore, Handler, LunStore, OpenContext } from './types.js';

export { builtinHandlerNames } from './handler-loader.js';
export { formatDevConfig, formatDevStack, parseDevConfig, subtypeOf, type DevLayer, type ParsedDevConfig } from './dev-config.js';

/** One layer of a stack: which handler, its config string and options. */
export interface LayerSpec {
  /** Built-in or registered name ('file', 'qcow2'), a module path, or an npm package name. */
  handler: string;
  config: string;
  options?: Record<string, string>;
}

/** What every layer's OpenContext shares; `lower` and `options` are per layer. */
export type BaseOpenContext = Omit<OpenContext, 'lower' | 'options'>;

/**
 * The layers (bottom first, as each handler's open() returned them) behind
 * every store openStack/openDevConfig returned: how an online control
 * operation that runs beside I/O reaches the open image of its layer.
 */
const openLayers = new WeakMap<object, readonly Backstore[]>();

/** The open layers behind a store from openStack or openDevConfig, bottom first. */
export function openLayersOf(store: object): readonly Backstore[] | undefined {
  return openLayers.get(store);
}

const registered = new Map<string, Handler>();
const userModules = new Map<string, string>();
const resolved = new Map<string, Promise<Handler>>();

/**
 * Make a handler object available by its name (e.g. one the daemon loaded
 * from its config file). Registered names win over built-ins.
 */
export function registerHandler(handler: Handler): void {
  validateHandler(handler, `registerHandler(${JSON.stringify((handler as { name?: unknown })?.name)})`);
  const existing = registered.get(handler.name);
  if (existing && existing !== handler) {
    throw new ConfigError(`registerHandler: a different handler named "${handler.name}" is already registered`);
  }
  registered.set(handler.name, handler);
  forgetResolved(handler.name);
}

/** A registration changes what `name` means: drop any earlier lookup. */
function forgetResolved(name: string): void {
  resolved.delete(`any:${name}`);
  resolved.delete(`named:${name}`);
}

/**
 * Make subtype `name` load its handler from `specifier` (a module path or
 * an npm package name) the first time a LUN uses it. Relative paths are
 * resolved against the current directory, so callers reading a config file
 * should make them absolute first. The module's own `name` does not have to
 * match: the subtype the operator chose wins.
 */
export function registerUserHandler(name: string, specifier: string): void {
  if (!HANDLER_NAME.test(name)) {
    throw new ConfigError(`handler name "${name}" is invalid (lower-case letters, digits, '-' and '_', starting with a letter or digit)`);
  }
  if (specifier === '') throw new ConfigError(`handler "${name}": the module path or package name is empty`);
  const existing = userModules.get(name);
  if (existing !== undefined && existing !== specifier) {
    throw new ConfigError(`handler "${name}" is already registered from "${existing}", not "${specifier}"`);
  }
  userModules.set(name, specifier);
  forgetResolved(name);
}

async function findHandler(name: string, allowModules: boolean, files: FileOpener): Promise<Handler> {
  const own = registered.get(name);
  if (own) return own;
  const specifier = userModules.get(name);
  if (specifier !== undefined) {
    const user = await loadHandlerModule(specifier, files);
    if (!user) throw new ConfigError(`handler "${name}": cannot find module "${specifier}"`);
    return user;
  }
  if (!isModulePath(name)) {
    const builtin = await loadBuiltinHandler(name);
    if (builtin) return builtin;
  }
  const builtins = `built-ins: ${builtinHandlerNames().join(', ') || 'none'}`;
  if (!allowModules) {
    throw new ConfigError(`unknown handler "${name}": not registered and no built-in handlers/${name} (${builtins})`);
  }
  const user = await loadHandlerModule(name, files);
  if (user) return user;
  throw new ConfigError(`unknown handler "${name}": no built-in handlers/${name}, and no module or package of that name (${builtins})`);
}

/**
 * Resolve a handler by name, module path or package name (loaded once, then
 * cached). With `allowModules: false` only registered names and built-ins
 * resolve: names that come from the kernel (dev_config) must not make the
 * daemon import arbitrary installed packages. A module given by path is
 * opened through `files` (confined to the allowed directories).
 */
export function resolveHandler(name: string, allowModules = true, files?: FileOpener): Promise<Handler> {
  const key = `${allowModules ? 'any' : 'named'}:${name}`;
  let pending = resolved.get(key);
  if (!pending) {
    pending = findHandler(name, allowModules, openerOf({ files }));
    resolved.set(key, pending);
    // A failed lookup is not cached: the operator may install the module and retry.
    pending.catch(() => resolved.delete(key));
  }
  return pending;
}

function checkLayering(handlers: readonly Handler[], layers: readonly LayerSpec[]): void {
  handlers.forEach((handler, index) => {
    let problem: string | undefined;
    if (index === 0 && handler.layer) problem = `handler "${handler.name}" is a layer and needs a store below it (e.g. a file)`;
    if (index > 0 && !handler.layer) problem = `handler "${handler.name}" is not a layer and cannot sit on top of "${handlers[index - 1]!.name}"`;
    if (problem !== undefined) throw errorInLayer(new ConfigError(problem), index, handlers.length, layers[index]!.handler);
  });
}

async function closeQuietly(stores: readonly Backstore[], base: BaseOpenContext): Promise<void> {
  for (const store of [...stores].reverse()) {
    try {
      await store.close();
    } catch (err) {
      base.log.warn({ err }, 'closing a layer after a failed open also failed');
    }
  }
}

/**
 * Open `layers` bottom-up (layers[0] is the bottom, e.g. the file), passing
 * each the store below it as `ctx.lower`, normalised by the core
 * (toLunStore: every method present or emulated, capabilities decided), so
 * a layer never tests for a missing method. Only the top layer gets
 * `base.size` (the LUN size); lower layers open at their own natural size.
 * The returned store owns the whole stack: its close() closes every layer,
 * top first, so a layer must NOT close its `lower` itself. If any layer
 * fails to open, the ones already open are closed again.
 */
export async function openStack(
  layers: readonly LayerSpec[],
  base: BaseOpenContext,
  resolveOptions: { allowModules?: boolean } = {},
): Promise<Backstore> {
  if (layers.length === 0) throw new ConfigError('openStack: no layers given');
  // Resolve everything first: an unknown handler must not leave files open.
  const allowModules = resolveOptions.allowModules ?? true;
  const files = openerOf(base);
  const handlers = await Promise.all(
    layers.map((layer, index) =>
      resolveHandler(layer.handler, allowModules, files).catch((err: unknown) => {
        throw errorInLayer(err, index, layers.length, layer.handler);
      }),
    ),
  );
  checkLayering(handlers, layers);

  const opened: Backstore[] = [];
  let lower: LunStore | undefined;
  try {
    for (const [index, layer] of layers.entries()) {
      const handler = handlers[index]!;
      const isTop = index === layers.length - 1;
      const ctx: OpenContext = {
        ...base,
        files,
        size: isTop ? base.size : undefined,
        // A lower medium's size is not the LUN's (crypt takes its header off).
        onMediumResized: isTop ? base.onMediumResized : undefined,
        log: base.log.child({ handler: handler.name }),
        lower,
        options: Object.assign(Object.create(null) as Record<string, string>, layer.options),
      };
      let store: Backstore;
      try {
        store = await handler.open(layer.config, ctx);
      } catch (err) {
        throw errorInLayer(err, index, layers.length, layer.handler);
      }
      opened.push(validateBackstore(store, handler.name));
      if (!isTop) lower = toLunStore(opened.at(-1)!);
    }
  } catch (err) {
    await closeQuietly(opened, base);
    throw err;
  }
  const stack = opened.length === 1 ? opened[0]! : composeLayers(opened);
  openLayers.set(stack, opened);
  return stack;
}

/**
 * Open the LUN a TCMU dev_config describes (`file//path;create=1`, or a
 * stack written top first: `crypt/;key=k1>file//path`) with the core
 * defaults applied. Every handler must be a built-in or a registered name
 * (registerHandler / registerUserHandler), never a package to import.
 */
export async function openDevConfig(devConfig: string, ctx: BaseOpenContext): Promise<LunStore> {
  const stack = await openStack(layersOfDevConfig(devConfig), ctx, { allowModules: false });
  const lunStore = toLunStore(stack);
  openLayers.set(lunStore, openLayers.get(stack)!);
  return lunStore;
}

/**
 * The layers a dev_config opens, bottom first: what openDevConfig opens and
 * what the daemon searches for a LUN's control operations, so both always
 * agree on what the LUN is made of.
 */
export function layersOfDevConfig(devConfig: string): LayerSpec[] {
  // A dev_config names its stack top first; stacks open bottom first.
  return [...parseDevConfig(devConfig).layers].reverse();
}

/**
 * Every handler this process can name: registered objects, registered
 * user modules and the built-ins (each loaded once). For listings such as
 * `tcmu-ts handlers`; a module that fails to load is reported, naming it.
 */
export async function knownHandlers(): Promise<NamedHandler[]> {
  const names = [...new Set([...registered.keys(), ...userModules.keys(), ...builtinHandlerNames()])].sort();
  const handlers = await Promise.all(names.map((name) => resolveHandler(name, false)));
  return names.map((name, index) => ({ name, handler: handlers[index]! }));
}

/** A handler and the subtype name it answers to (a user module's own `name` may differ). */
export interface NamedHandler {
  name: string;
  handler: Handler;
}
