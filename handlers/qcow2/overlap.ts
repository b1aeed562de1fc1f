/**
 * Metadata-overlap protection. A damaged refcount (or a crafted image) can
 * make the allocator hand out a cluster that still holds metadata, or make
 * an L2 entry point guest data at the L1 table; writing there destroys the
 * image silently. So every cluster that holds metadata is remembered here,
 * by kind, and three choke points ask before writing:
 *   - the allocator's result (a cluster it returns must hold no metadata);
 *   - guest data writes (the host clusters must hold no metadata);
 *   - metadata table writes (the cluster must hold that kind, nothing else).
 * A conflict refuses the write and marks the image corrupt (read-only).
 *
 * Cost on the hot path is one Map lookup per cluster written: the map is
 * kept as structures are allocated and freed, never rebuilt per write (only
 * after rare whole-structure changes: refcount table growth, snapshots).
 * Inactive L2 tables (reachable only from snapshots) are not tracked: they
 * are only found by walking, and their refcount keeps the allocator away.
 */
export type MetadataKind = 'header' | 'l1' | 'l2' | 'refcount-table' | 'refcount-block' | 'snapshot-table' | 'snapshot-l1';

export class MetadataMap {
  private readonly kinds = new Map<number, MetadataKind>();

  constructor(private readonly clusterSize: number) {}

  /**
   * Register `bytes` at host offset `offset` as `kind`. Returns a description
   * of the first cluster already registered as another kind (then nothing of
   * this range is registered), or undefined.
   */
  add(offset: number, bytes: number, kind: MetadataKind): string | undefined {
    const first = Math.floor(offset / this.clusterSize);
    const n = Math.max(1, Math.ceil(bytes / this.clusterSize));
    for (let c = first; c < first + n; c++) {
      const other = this.kinds.get(c);
      if (other !== undefined && other !== kind) return `${kind} at 0x${offset.toString(16)} overlaps the ${other} (cluster ${c})`;
    }
    for (let c = first; c < first + n; c++) this.kinds.set(c, kind);
    return undefined;
  }

  /** A cluster was freed (refcount reached 0): whatever it held is gone. */
  removeCluster(cluster: number): void {
    this.kinds.delete(cluster);
  }

  kindOf(cluster: number): MetadataKind | undefined {
    return this.kinds.get(cluster);
  }

  /**
   * What a write of `bytes` at `offset` would destroy: undefined when it is
   * safe. `as` is the kind being written (undefined for guest data); writing
   * a table over a cluster registered as the same kind is its normal update.
   */
  conflict(offset: number, bytes: number, as?: MetadataKind): string | undefined {
    if (bytes <= 0) return undefined;
    const first = Math.floor(offset / this.clusterSize);
    const last = Math.floor((offset + bytes - 1) / this.clusterSize);
    for (let c = first; c <= last; c++) {
      const k = this.kinds.get(c);
      if (k !== undefined && k !== as) {
        return `${as ?? 'guest data'} write at 0x${offset.toString(16)} (${bytes} bytes) would overwrite the ${k} (cluster ${c})`;
      }
    }
    return undefined;
  }

  clear(): void {
    this.kinds.clear();
  }

  get size(): number {
    return this.kinds.size;
  }
}
