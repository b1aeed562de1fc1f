/**
 * Finding the handler that runs a control operation, through the registry
 * (never by importing a handler): which handlers offer what (listings, CLI
 * commands), which handler takes an offline operation on an image path, and
 * which layer of a served LUN's stack takes an online one.
 */
import { existsSync } from 'node:fs';
import { ConfigError } from './config-error.js';
import { type FileOpener, openerOf } from './confine.js';
import { operationOf, splitOperationName } from './control.js';
import { knownHandlers, type LayerSpec, resolveHandler } from './registry.js';
import type { ControlMode, ControlOperation, Handler } from './types.js';

/** One operation one handler offers. */
export interface OfferedOperation {
  /** Subtype name the handler answers to. */
  handlerName: string;
  handler: Handler;
  /** '<group>.<verb>' */
  name: string;
  group: string;
  verb: string;
  operation: ControlOperation;
}

/** 'snapshot.create' -> 'snapshot create', as a user types it. */
export const spokenName = (name: string) => name.replace('.', ' ');

/** Every operation of every known handler: handlers by name, each one's operations in declared order. */
export async function offeredOperations(): Promise<OfferedOperation[]> {
  const offers: OfferedOperation[] = [];
  for (const { name: handlerName, handler } of await knownHandlers()) {
    for (const name of Object.keys(handler.control?.operations ?? {})) {
      const parts = splitOperationName(name)!; // checked when the handler was loaded
      offers.push({ handlerName, handler, name, ...parts, operation: operationOf(handler.control, name)! });
    }
  }
  return offers;
}

function offeringNames(offers: readonly OfferedOperation[], name: string, mode: ControlMode): string {
  const names = offers.filter((o) => o.name === name && o.operation.modes.includes(mode)).map((o) => o.handlerName);
  return names.length ? names.join(', ') : 'none';
}

export interface OfflineChoice {
  /** Handler name (`--format`) the user gave; absent: choose by what offers the operation. */
  format?: string;
  /** The image path the operation is about (probed when several handlers qualify). */
  path: string;
  /** Used when several handlers qualify, none claims the image and `format` is absent. */
  fallback?: string;
  files?: FileOpener;
}

/**
 * The handler that runs offline operation `name` on an image path: the one
 * named by --format, else the only one offering it, else the one whose
 * probe recognises the existing image, else `fallback`.
 */
export async function offlineOperation(name: string, choice: OfflineChoice): Promise<OfferedOperation> {
  const offers = await offeredOperations();
  const candidates = offers.filter((o) => o.name === name && o.operation.modes.includes('offline'));
  if (choice.format !== undefined) {
    const chosen = candidates.find((o) => o.handlerName === choice.format);
    if (chosen) return chosen;
    await resolveHandler(choice.format, false); // an unknown name gets the registry's own error
    throw new ConfigError(`handler "${choice.format}" offers no ${spokenName(name)} on an image path (offered by: ${offeringNames(offers, name, 'offline')})`);
  }
  if (candidates.length === 1) return candidates[0]!;
  if (candidates.length === 0) throw new ConfigError(`no handler offers ${spokenName(name)} on an image path`);
  if (existsSync(choice.path)) {
    const files = openerOf({ files: choice.files });
    const claims = await Promise.all(candidates.map((o) => o.handler.control!.probe?.(choice.path, files) ?? false));
    const claiming = candidates.filter((_, index) => claims[index]);
    if (claiming.length === 1) return claiming[0]!;
  }
  const fallback = candidates.find((o) => o.handlerName === choice.fallback);
  if (fallback) return fallback;
  throw new ConfigError(
    `several handlers offer ${spokenName(name)} (${candidates.map((o) => o.handlerName).join(', ')}) and none alone recognises ${choice.path}: choose one with --format`,
  );
}

/** The layer of a stack that runs an online operation. */
export interface LayerOperation {
  handler: Handler;
  layer: LayerSpec;
  /** Position in the stack, 0 = bottom. */
  index: number;
  operation: ControlOperation;
}

/**
 * The layer of `layers` (bottom first, as openStack takes them) that offers
 * online operation `name`, searching from the top: in crypt over qcow2 over
 * file, a snapshot operation reaches the qcow2 layer. The handlers are
 * resolved as the LUN's own open resolves them (no package imports).
 * `describe` names the LUN in the error when no layer offers it.
 */
export async function layerOperation(
  layers: readonly LayerSpec[],
  name: string,
  describe: string,
  files?: FileOpener,
): Promise<LayerOperation> {
  const opener = openerOf({ files });
  const handlers = await Promise.all(layers.map((layer) => resolveHandler(layer.handler, false, opener)));
  for (let index = layers.length - 1; index >= 0; index--) {
    const operation = operationOf(handlers[index]!.control, name);
    if (operation?.modes.includes('online')) return { handler: handlers[index]!, layer: layers[index]!, index, operation };
  }
  const stack = layers.map((l) => l.handler).reverse().join(' over ');
  const offers = await offeredOperations().catch(() => []);
  throw new ConfigError(`${describe} (${stack}): no layer offers ${spokenName(name)} on a served LUN (offered by: ${offeringNames(offers, name, 'online')})`);
}
