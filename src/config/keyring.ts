/**
 * Where a crypt layer's `key=NAME` comes from: the daemon's key directory
 * (file <key_dir>/NAME, used exactly like cryptsetup's --key-file: all
 * bytes, no newline stripping), or a key handed over the control socket
 * and held only in memory (`add`). Memory keys win over files of the same
 * name. Every `get` returns a fresh copy that the caller wipes (fill(0))
 * as soon as it has derived what it needs.
 */
import { DEFAULT_KEY_DIR, readSecretFile, validateSecretName } from './key-files.js';

/** cryptsetup's default maximum key file size (--keyfile-size limit). */
export const MAX_LUKS_KEY_FILE = 8 * 1024 * 1024;

export interface KeySource {
  /** The key's bytes (a copy the caller must wipe); throws a coded error naming the key, never its content. */
  get(name: string): Buffer;
}

export class KeyRing implements KeySource {
  private readonly memory = new Map<string, Buffer>();

  constructor(readonly keyDir: string = DEFAULT_KEY_DIR) {}

  /** Hold a key in memory only (e.g. from `tcmu-ts key add NAME`). The ring keeps its own copy. */
  add(name: string, bytes: Buffer): void {
    validateSecretName('key name', name);
    this.remove(name);
    this.memory.set(name, Buffer.from(bytes));
  }

  /** Forget a memory key, wiping it. True if it existed. */
  remove(name: string): boolean {
    const old = this.memory.get(name);
    old?.fill(0);
    return this.memory.delete(name);
  }

  /** Names of memory keys (never their bytes), for status. */
  memoryKeyNames(): string[] {
    return [...this.memory.keys()].sort();
  }

  get(name: string): Buffer {
    validateSecretName('key name', name);
    const held = this.memory.get(name);
    if (held) return Buffer.from(held);
    return readSecretFile(this.keyDir, name, { what: 'key file', maxBytes: MAX_LUKS_KEY_FILE });
  }

  /** Wipe every memory key (daemon shutdown). */
  clear(): void {
    for (const name of [...this.memory.keys()]) this.remove(name);
  }
}
