/** SCSI disk emulation: the public surface of src/scsi. */
export { ScsiDisk, type ScsiDiskOptions } from './disk.js';
export { deriveIdentity, identityFromUnitSerial, type DiskIdentity } from './identity.js';
export { type ScsiCommand, type ScsiTarget, ScsiStatus } from './command.js';
export { statusForStoreError, IoKind } from './sense-map.js';
export { SenseKey, Asc } from './sense.js';
export type { CopyEndpoint, CopyPeerLookup } from './copy-peers.js';
