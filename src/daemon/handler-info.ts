/**
 * Names and descriptions of the handlers the daemon serves, for the D-Bus
 * objects targetcli lists. Resolving loads each handler module once (the
 * first LUN of that subtype would load it anyway); a user handler that
 * fails to load is still listed, with the reason as its description, so
 * the admin sees it in targetcli and its CheckConfig says what is wrong.
 */
import type { FileOpener } from '../backstore/confine.js';
import { resolveHandler } from '../backstore/registry.js';
import type { HandlerInfo } from './dbus-service.js';

/**
 * `files` must be the daemon's confined opener: a user handler given by
 * module path is loaded through it, and the loaded module is cached for
 * every later LUN.
 */
export async function describeHandlers(subtypes: Iterable<string>, files: FileOpener): Promise<HandlerInfo[]> {
  return Promise.all(
    [...subtypes].sort().map(async (name) => {
      try {
        const handler = await resolveHandler(name, false, files);
        return { name, description: handler.description };
      } catch (err) {
        return { name, description: `cannot be loaded: ${(err as Error).message}` };
      }
    }),
  );
}
