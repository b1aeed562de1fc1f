/**
 * The LUNs of this daemon by NAA designator, so EXTENDED COPY received by
 * one LUN can read from or write to another (VMware XCOPY between
 * datastores on the same daemon) without the data leaving the process. A
 * LUN is listed while it serves; a lookup of one that is stopping, failed
 * or served elsewhere finds nothing, and the initiator gets COPY TARGET
 * DEVICE NOT REACHABLE.
 */
import type { CopyEndpoint, CopyPeerLookup } from '../scsi/index.js';

/** Returns the LUN's current endpoint, or undefined while it is not serving. */
export type EndpointSource = () => CopyEndpoint | undefined;

export class CopyRegistry {
  private readonly byNaa = new Map<string, EndpointSource>();

  /** List `source` under `naa` (hex digits, as DiskIdentity.naa); returns the removal. */
  add(naa: string, source: EndpointSource): () => void {
    const key = naa.toLowerCase();
    this.byNaa.set(key, source);
    return () => {
      if (this.byNaa.get(key) === source) this.byNaa.delete(key);
    };
  }

  /** For ScsiDisk's copyPeers option. */
  readonly lookup: CopyPeerLookup = (naa: Buffer) => this.byNaa.get(naa.toString('hex'))?.();

  get size(): number {
    return this.byNaa.size;
  }
}

/** The daemon's registry: every Lun of this process lists itself here unless given another. */
export const daemonCopyRegistry = new CopyRegistry();
