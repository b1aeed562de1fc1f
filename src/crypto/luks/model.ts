/**
 * What tcmu-ts knows about a LUKS container after parsing and validating
 * its header (LUKS1 or LUKS2): one aes-xts-plain64 data segment, the
 * keyslots that may unlock it and the digest that proves a volume key.
 * Everything here was bounds-checked against the device size and the
 * format's limits by the parser; code that uses it trusts it.
 */
export type HashName = 'sha1' | 'sha256' | 'sha512';

export type Kdf =
  | { type: 'pbkdf2'; hash: HashName; iterations: number; salt: Buffer }
  | { type: 'argon2i' | 'argon2id'; time: number; memoryKiB: number; cpus: number; salt: Buffer };

export interface Keyslot {
  /** '0'..'31' (LUKS2 id; LUKS1 slot index). */
  id: string;
  /** Volume key size in bytes this keyslot stores. */
  keySize: number;
  /** 0 = never tried automatically (LUKS2 "ignore"), 1 normal, 2 preferred. */
  priority: number;
  kdf: Kdf;
  stripes: number;
  afHash: HashName;
  /** Key material area, in bytes from the start of the device. */
  areaOffset: number;
  areaSize: number;
  /** Key size of the area cipher (aes-xts-plain64) in bytes: the KDF output length. */
  areaKeySize: number;
}

export interface VolumeDigest {
  hash: HashName;
  iterations: number;
  salt: Buffer;
  digest: Buffer;
  /** Keyslot ids this digest vouches for. */
  keyslots: string[];
}

export interface LuksToken {
  id: string;
  type: string;
  keyslots: string[];
}

export interface LuksHeader {
  version: 1 | 2;
  uuid: string;
  label: string;
  /** Always 'aes-xts-plain64' (anything else is refused while parsing). */
  cipher: 'aes-xts-plain64';
  /** Volume key size in bytes: 32 (AES-128-XTS) or 64 (AES-256-XTS). */
  keySize: number;
  /** Encryption sector size: 512 or 4096. */
  sectorSize: number;
  /** First byte of encrypted data. */
  dataOffset: number;
  /** Data segment length in bytes, or 'dynamic' (to the end of the device). */
  dataSize: number | 'dynamic';
  /** IV of the segment's first 512-byte sector (LUKS2 iv_tweak; 0 for LUKS1). */
  ivTweak: number;
  keyslots: Keyslot[];
  digests: VolumeDigest[];
  tokens: LuksToken[];
  /** LUKS2 persistent activation flags (allow-discards, ...), informational. */
  flags: string[];
  /** LUKS2: size of one header copy (binary + JSON); LUKS1: 0. */
  hdrSize: number;
  /** LUKS2: the sequence id of the copy we read. */
  seqid: number;
}

export const HASH_SIZES: Record<HashName, number> = { sha1: 20, sha256: 32, sha512: 64 };

export function isHashName(name: string): name is HashName {
  return name === 'sha1' || name === 'sha256' || name === 'sha512';
}
