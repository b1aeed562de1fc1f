/**
 * A new qcow2 image with LUKS encryption, as `qemu-img create -o
 * encrypt.format=luks` makes one: crypt_method 2, the full disk encryption
 * header extension pointing at clusters right after the L1 table, and in
 * them a LUKS1 header (aes-xts-plain64, 512-bit key, sha256, one keyslot)
 * whose key material offsets count from the header's first byte. The
 * header's payload offset is its own length (QEMU does the same; qcow2
 * ignores it). create.ts lays the clusters out and counts them.
 */
import type { FileHandle } from 'node:fs/promises';
import { StorageError } from '../../src/backstore/errors.js';
import { formatLuks, LUKS1_DATA_OFFSET } from '../../src/crypto/luks/format.js';
import { EXT_CRYPTO, type HeaderExtension } from './format.js';
import { writeFull } from './file-io.js';

export interface EncryptOptions {
  /** The passphrase (a key file's bytes, used whole). Not kept; the caller wipes it. */
  passphrase: Buffer;
  /** PBKDF2-sha256 iterations of the keyslot (default 1,000,000; QEMU benchmarks ~2 s). */
  iterations?: number;
}

/** Bytes of the LUKS1 header plus the key material of its 8 keyslots (what QEMU reserves too). */
const LUKS_REGION = LUKS1_DATA_OFFSET;

/** Clusters the encryption header takes. */
export function encryptionClusters(clusterSize: number): number {
  return Math.ceil(LUKS_REGION / clusterSize);
}

export function encryptionExtension(offset: number): HeaderExtension {
  const data = Buffer.alloc(16);
  data.writeBigUInt64BE(BigInt(offset), 0);
  data.writeBigUInt64BE(BigInt(LUKS_REGION), 8);
  return { type: EXT_CRYPTO, data };
}

export function checkEncryptable(version: number): void {
  if (version !== 3) throw new StorageError('EINVAL', 'qcow2: encryption needs a version 3 (compat 1.1) image');
}

/** Write the LUKS1 header at `offset` (the clusters are allocated and zero). */
export async function writeEncryptionHeader(fh: FileHandle, offset: number, opts: EncryptOptions): Promise<void> {
  // formatLuks wants a device that holds at least one data sector after the
  // header; the region is the header only (data lives in qcow2 clusters), and
  // nothing is written at or past LUKS_REGION.
  await formatLuks(
    async (at, data) => {
      if (at + data.length > LUKS_REGION) throw new StorageError('EIO', 'qcow2: LUKS header larger than its reserved clusters');
      await writeFull(fh, data, offset + at);
    },
    LUKS_REGION + 512,
    { version: 1, passphrase: opts.passphrase, kdf: { type: 'pbkdf2', iterations: opts.iterations ?? 1_000_000 }, digestIterations: Math.max(1000, Math.floor((opts.iterations ?? 1_000_000) / 8)) },
  );
}
