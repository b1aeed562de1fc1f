/**
 * The 'crypt' layer: a LUKS1/LUKS2 container (cryptsetup 2.6 compatible,
 * aes-xts-plain64) on top of any store, e.g. `crypt/;key=k1>file//srv/a.img`.
 *
 * Options:
 *   key=NAME          the passphrase: <key_dir>/NAME used as cryptsetup's
 *                     --key-file (all bytes), or a memory key of that name
 *                     (ctx.keys). Required.
 *   allow_discards=1  pass UNMAP down (as dm-crypt's allow_discards). It
 *                     tells whoever reads the image which blocks are unused,
 *                     and discarded blocks read back as noise, not zeros.
 *   create=luks2|luks1  format the layer below with that key when it is
 *                     still empty (its first MiB all zeros: a fresh qcow2 or
 *                     file), as cryptsetup luksFormat would; a LUKS header
 *                     is opened as usual; anything else is refused, never
 *                     overwritten. LUKS2 gets the LUN's block size as its
 *                     sector size, argon2id (time 4, 256 MiB) keyslots.
 *
 * At open the header is read and validated, the KDF runs once off the event
 * loop, the volume key is split into the two XTS halves and the passphrase
 * and volume key buffers are wiped. Reads and writes then cost one batched
 * XTS pass per request (./xts.ts). WRITE SAME never forwards to the layer
 * below (zeros below decrypt to noise): it is left to the core, which writes
 * zeros through our write, i.e. encrypts them. LBPRZ is never claimed.
 */
import { ConfigError } from '../../src/backstore/config-error.js';
import { booleanOption, rejectUnknownOptions } from '../../src/backstore/options.js';
import type { Backstore, Handler, MaybePromise, OpenContext, WriteOptions } from '../../src/backstore/types.js';
import { KeyRing, type KeySource } from '../../src/config/keyring.js';
import { cryptControl } from './control.js';
import { LuksError } from '../../src/crypto/luks/errors.js';
import { DEFAULT_LIMITS, type LuksLimits } from '../../src/crypto/luks/limits.js';
import type { LuksHeader } from '../../src/crypto/luks/model.js';
import { looksLikeLuks, readLuksHeader } from '../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../src/crypto/luks/unlock.js';
import { readLower, writeLower } from './lower-io.js';
import { formatLuks } from '../../src/crypto/luks/format.js';
import { iovLength } from '../../src/iov.js';
import { contiguousView, ScratchPool } from './scratch.js';
import { xtsEngine, type XtsEngine } from '../../src/crypto/xts.js';

const NAME = 'crypt';

/** Names the LUN in errors: the daemon's logger carries `lun`; else the layer itself. */
function lunLabel(ctx: OpenContext): string {
  const bindings = typeof ctx.log.bindings === 'function' ? ctx.log.bindings() : {};
  return typeof bindings.lun === 'string' ? `LUN ${bindings.lun}` : 'crypt layer';
}

function loadKey(keys: KeySource, name: string, where: string): Buffer {
  try {
    return keys.get(name);
  } catch (err) {
    throw new ConfigError(`${where}: key "${name}": ${(err as Error).message}`);
  }
}

interface CryptGeometry {
  size: number;
  blockSize: number;
}

function geometry(header: LuksHeader, lower: Backstore, ctx: OpenContext, where: string): CryptGeometry {
  const blockSize = ctx.blockSize;
  if (blockSize % header.sectorSize !== 0) {
    throw new ConfigError(`${where}: the LUKS encryption sector size is ${header.sectorSize} bytes; the LUN's block size must be a multiple of it (hw_block_size=${header.sectorSize}), not ${blockSize}`);
  }
  if (blockSize % lower.blockSize !== 0 || header.dataOffset % lower.blockSize !== 0) {
    throw new ConfigError(`${where}: the layer below has ${lower.blockSize}-byte blocks, which do not divide the LUKS data offset ${header.dataOffset} and block size ${blockSize}`);
  }
  const available = header.dataSize === 'dynamic' ? lower.size - header.dataOffset : header.dataSize;
  const size = Math.floor(Math.max(0, available) / blockSize) * blockSize;
  if (size === 0) throw new ConfigError(`${where}: the LUKS container holds no data area`);
  if (ctx.size !== undefined && ctx.size > size) {
    throw new ConfigError(`${where}: the LUN size ${ctx.size} exceeds the encrypted data area (${size} bytes)`);
  }
  // A LUN configured smaller than the data area sees only its first dev_size bytes (as dm-crypt --size).
  return { size: ctx.size === undefined ? size : Math.floor(ctx.size / blockSize) * blockSize, blockSize };
}

/**
 * Open the layer. `limits` bounds what the header may ask for (KDF memory
 * and time); the handler uses the defaults, the fuzz target tighter ones.
 */
export async function openCryptLayer(config: string, ctx: OpenContext, limits: LuksLimits = DEFAULT_LIMITS): Promise<Backstore> {
  const lower = ctx.lower;
  if (!lower) throw new ConfigError('crypt: needs a layer below it, e.g. crypt/;key=k1>file//srv/a.img');
  if (config !== '') throw new ConfigError(`crypt: takes no config after "crypt/", got ${JSON.stringify(config.slice(0, 80))}`);
  rejectUnknownOptions(NAME, ctx.options, ['key', 'allow_discards', 'create']);
  const keyName = ctx.options.key;
  if (keyName === undefined || keyName === '') throw new ConfigError('crypt: option key=NAME is required (a key file in the key directory)');
  const allowDiscards = booleanOption(NAME, ctx.options, 'allow_discards', false);
  const where = lunLabel(ctx);

  const create = ctx.options.create;
  if (create !== undefined && create !== 'luks2' && create !== 'luks1') {
    throw new ConfigError(`crypt: option create="${create.slice(0, 40)}" must be luks2 or luks1`);
  }
  const read = (offset: number, length: number) => readLower(lower, offset, length);
  if (create !== undefined) await formatIfEmpty(lower, create, ctx, where, () => loadKey(ctx.keys ?? new KeyRing(), keyName, where));
  const { header, warnings } = await readLuksHeader({ read, size: lower.size, where, limits });
  for (const w of warnings) ctx.log.warn({ luks: header.uuid }, `crypt: ${w}`);
  const geo = geometry(header, lower, ctx, where);

  const passphrase = loadKey(ctx.keys ?? new KeyRing(), keyName, where);
  let key: XtsEngine;
  let keyslot: string;
  try {
    const unlocked = await unlockVolumeKey(header, passphrase, read, where, limits);
    keyslot = unlocked.keyslot;
    try {
      key = xtsEngine(unlocked.volumeKey);
    } finally {
      unlocked.volumeKey.fill(0);
    }
  } finally {
    passphrase.fill(0);
  }
  ctx.log.info({ luks: header.version, uuid: header.uuid, keyslot, sectorSize: header.sectorSize, keyBits: header.keySize * 8, size: geo.size }, 'crypt: LUKS volume unlocked');
  ctx.log.debug({ engine: key.kind }, 'crypt: aes-xts engine');
  return new CryptStore(lower, header, key, geo, ctx.readOnly, allowDiscards);
}

/** How much of the layer below must be zeros before `create=` formats it. */
const EMPTY_PROBE = 1024 * 1024;

/** create=luks2|luks1: format an empty layer below (all zeros at its head); leave a LUKS one alone; refuse anything else. */
async function formatIfEmpty(lower: Backstore, version: 'luks2' | 'luks1', ctx: OpenContext, where: string, key: () => Buffer): Promise<void> {
  const head = await readLower(lower, 0, Math.min(EMPTY_PROBE, lower.size - (lower.size % lower.blockSize)));
  if (looksLikeLuks(head)) return;
  if (head.some((b) => b !== 0)) {
    throw new ConfigError(`${where}: create=${version}: the layer below is neither a LUKS container nor empty; refusing to format over its data`);
  }
  if (ctx.readOnly || lower.readOnly || !lower.write) throw new ConfigError(`${where}: create=${version}: the layer below is read-only`);
  const passphrase = key();
  try {
    const sectorSize = version === 'luks2' && ctx.blockSize === 4096 ? 4096 : 512;
    const { uuid } = await formatLuks((offset, data) => writeLower(lower, offset, data), lower.size, {
      version: version === 'luks2' ? 2 : 1,
      passphrase,
      sectorSize,
    });
    if (lower.flush) await lower.flush();
    ctx.log.info({ uuid, format: version, sectorSize }, 'crypt: formatted the empty layer below as a new LUKS container');
  } finally {
    passphrase.fill(0);
  }
}

/** The opened layer: plaintext above, ciphertext below at header.dataOffset. */
class CryptStore implements Backstore {
  size: number;
  readonly blockSize: number;
  readonly readOnly: boolean;
  readonly writeCache?: boolean;
  readonly fua?: boolean;
  readonly thin: boolean;
  private readonly dataOffset: number;
  private readonly sectorSize: number;
  /** IV of the data area's first 512-byte unit (LUKS2 iv_tweak). */
  private readonly ivBase: number;
  /** IVs count 512-byte units even for 4096-byte sectors (LUKS2 does not set dm-crypt's iv_large_sectors). */
  private readonly ivStep: number;
  private key: XtsEngine | null;
  private readonly scratch = new ScratchPool();

  // Optional methods exist only when meaningful (the core fills the rest).
  readonly write?: (offset: number, iov: readonly Buffer[], opts: WriteOptions) => Promise<void>;
  readonly flush?: () => MaybePromise<void>;
  readonly discard?: (offset: number, length: number) => MaybePromise<void>;
  /** A LUKS2 "dynamic" (or LUKS1) segment follows the device: growing the LUN grows the layer below. */
  readonly resize?: (newSize: number) => Promise<void>;
  /** Discarded blocks read back as noise (ciphertext zeros or garbage decrypted), never as zeros: no LBPRZ. */
  readonly discardZeroes = false;

  constructor(
    private readonly lower: Backstore,
    header: LuksHeader,
    key: XtsEngine,
    geo: CryptGeometry,
    readOnly: boolean,
    allowDiscards: boolean,
  ) {
    this.size = geo.size;
    this.blockSize = geo.blockSize;
    this.dataOffset = header.dataOffset;
    this.sectorSize = header.sectorSize;
    this.ivBase = header.ivTweak;
    this.ivStep = header.sectorSize / 512;
    this.key = key;
    this.readOnly = readOnly || lower.readOnly === true || !lower.write;
    this.writeCache = lower.writeCache;
    // The layer below is a LunStore: its write honours opts.fua itself (the
    // core added write + flush there if that store needs it), so passing FUA
    // down is enough; declaring it here keeps the core from flushing twice.
    this.fua = true;
    if (!this.readOnly) this.write = (offset, iov, opts) => this.writeData(offset, iov, opts);
    if (lower.flush) this.flush = () => lower.flush!();
    // Discard only when asked for, and only if the layer below really deallocates.
    // Blocks discarded below read back as noise here, so this layer must never
    // answer WRITE SAME by discarding: writeZeroes always encrypts zeros.
    this.thin = !this.readOnly && allowDiscards && lower.discard !== undefined && lower.thin !== false;
    if (this.thin) {
      this.discard = (offset, length) => lower.discard!(this.dataOffset + offset, length);
    }
    if (!this.readOnly && header.dataSize === 'dynamic' && lower.resize) {
      this.resize = async (newSize) => {
        await lower.resize!(this.dataOffset + newSize);
        this.size = newSize;
      };
    }
  }

  private liveKey(): XtsEngine {
    if (!this.key) throw Object.assign(new Error('crypt: the layer is closed'), { code: 'EIO' });
    return this.key;
  }

  /** `buf` in place, or into `out` (then `buf` is left as it was). */
  private crypt(encrypt: boolean, buf: Buffer, offset: number, out?: Buffer): void {
    this.liveKey().crypt(encrypt, buf, this.sectorSize, this.ivBase + offset / 512, this.ivStep, out);
  }

  async read(offset: number, iov: readonly Buffer[]): Promise<void> {
    this.liveKey();
    const view = contiguousView(iov);
    if (view && (view.byteOffset & 3) === 0) {
      // Back-to-back buffers: read the ciphertext straight into them and decrypt in place, one XTS call.
      await this.lower.read(this.dataOffset + offset, iov);
      this.crypt(false, view, offset);
      return;
    }
    // Scattered buffers (a sector may straddle two): one contiguous scratch, one XTS pass.
    const total = iovLength(iov);
    const base = this.scratch.take(total);
    try {
      const scratch = base.subarray(0, total);
      await this.lower.read(this.dataOffset + offset, [scratch]);
      this.crypt(false, scratch, offset);
      let at = 0;
      for (const b of iov) at += scratch.copy(b, 0, at, at + b.length);
    } finally {
      this.scratch.give(base);
    }
  }

  private async writeData(offset: number, iov: readonly Buffer[], opts: WriteOptions): Promise<void> {
    // Never encrypt the caller's buffers in place (kernel data area, the core's zero buffer):
    // back-to-back buffers are encrypted straight into the scratch buffer, no copy first.
    const total = iovLength(iov);
    const base = this.scratch.take(total);
    try {
      const scratch = base.subarray(0, total);
      const view = contiguousView(iov);
      if (view) {
        this.crypt(true, view, offset, scratch);
      } else {
        let at = 0;
        for (const b of iov) at += b.copy(scratch, at);
        this.crypt(true, scratch, offset);
      }
      await this.lower.write!(this.dataOffset + offset, [scratch], opts);
    } finally {
      this.scratch.give(base);
    }
  }

  close(): void {
    // The stack closes `lower`; we only wipe our key.
    this.key?.wipe();
    this.key = null;
    this.scratch.clear();
  }
}

const crypt: Handler = {
  name: NAME,
  description: 'LUKS1/LUKS2 encryption layer (aes-xts-plain64), compatible with cryptsetup',
  layer: true,
  open: (config, ctx) => openCryptLayer(config, ctx),
  control: cryptControl,
};

export default crypt;
export { LuksError };
