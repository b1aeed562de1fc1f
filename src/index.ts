/**
 * Public API for handler authors and embedders. A handler module default-
 * exports (or exports as `handler`) an object satisfying `Handler`; see
 * docs/HANDLERS.md.
 */
export type {
  Backstore,
  ControlArg,
  ControlArgs,
  ControlContext,
  ControlMode,
  ControlOperation,
  ControlResult,
  Extent,
  Handler,
  HandlerControl,
  LunStore,
  MaybePromise,
  OpenContext,
  WriteOptions,
  WriteZeroesOptions,
} from './backstore/types.js';
export { StorageError, errorCode, type StorageErrorCode } from './backstore/errors.js';
export { STORE_COMPLETES_IN_RING, type InRing } from './scsi/command.js';
export { ConfigError } from './backstore/config-error.js';
export * from './backstore/options.js';
export { toLunStore } from './backstore/lun-store.js';
export * from './iov.js';
export { openDevConfig, openStack, registerHandler, parseDevConfig, formatDevConfig, formatDevStack, type DevLayer } from './backstore/registry.js';
export { coerceControlArgs } from './backstore/control.js';
export { layerOperation, offeredOperations, offlineOperation } from './backstore/control-registry.js';
