/**
 * The crypt handler's control operations (Handler.control), offline on an
 * image path:
 *
 *   tcmu-ts image create PATH --format crypt --size N --encrypt luks2|luks1
 *       --key-file F [--sector-size 512|4096] [--kdf argon2id|argon2i|pbkdf2]
 *   tcmu-ts image info PATH        (a LUKS image is recognised by its magic)
 *
 * create makes a raw file holding a LUKS container whose data area is N
 * bytes (serve it as `crypt/;key=NAME>file//PATH`); info shows the header
 * without any key. The key file is read through ctx.files like every other
 * file, used whole (as cryptsetup --key-file), refused when group or others
 * may read it, and wiped after use.
 */
import { readKeyFile } from '../../src/crypto/key-file.js';
import { resolve } from 'node:path';
import { openerOf } from '../../src/backstore/confine.js';
import type { ControlContext, ControlOperation, HandlerControl } from '../../src/backstore/types.js';
import { createEncryptedImage, isLuksImage, luksInfo } from './image.js';
import type { KdfChoice } from '../../src/crypto/luks/format.js';

const pathOf = (ctx: ControlContext) => resolve(ctx.config);

/** The KDF cost for new keyslots: argon2id 1 GiB would stall small machines, so a moderate default. */
function kdfChoice(name: string, format: string): KdfChoice {
  if (name === 'pbkdf2' || format === 'luks1') return { type: 'pbkdf2', iterations: 1_000_000 };
  return { type: name === 'argon2i' ? 'argon2i' : 'argon2id', time: 4, memoryKiB: 256 * 1024, cpus: 2 };
}

const imageCreate: ControlOperation = {
  description: 'create a raw image holding a LUKS container (cryptsetup-compatible), for crypt/;key=NAME>file//PATH',
  modes: ['offline'],
  args: [
    { name: 'size', type: 'size', required: true, description: 'usable (decrypted) size, e.g. 10G; the file is this plus the LUKS header' },
    { name: 'encrypt', type: 'string', choices: ['luks2', 'luks1'], default: 'luks2', description: 'container format' },
    { name: 'key-file', type: 'string', required: true, description: 'the passphrase file, used whole (as cryptsetup --key-file); mode 0600' },
    { name: 'sector-size', type: 'string', choices: ['512', '4096'], default: '512', description: 'encryption sector size (LUKS2; 4096 needs a LUN with block_size 4096)' },
    { name: 'kdf', type: 'string', choices: ['argon2id', 'argon2i', 'pbkdf2'], default: 'argon2id', description: 'keyslot KDF (LUKS1: always pbkdf2)' },
  ],
  async run(ctx, args) {
    const path = pathOf(ctx);
    const format = args.encrypt as 'luks2' | 'luks1';
    const files = openerOf(ctx);
    const passphrase = await readKeyFile(args['key-file'] as string, files);
    try {
      const r = await createEncryptedImage(
        path,
        { format, size: args.size as number, passphrase, sectorSize: Number(args['sector-size']) as 512 | 4096, kdf: kdfChoice(args.kdf as string, format) },
        files,
      );
      return { value: { created: path, ...r }, text: `created ${path} (${format}, data at ${r.dataOffset}, uuid ${r.uuid})` };
    } finally {
      passphrase.fill(0);
    }
  },
};

const imageInfoOp: ControlOperation = {
  description: 'show the LUKS header of an image (format, cipher, sector size, keyslots) without a key',
  modes: ['offline'],
  async run(ctx) {
    return { value: await luksInfo(pathOf(ctx), openerOf(ctx)) };
  },
};

export const cryptControl: HandlerControl = {
  operations: {
    'image.create': imageCreate,
    'image.info': imageInfoOp,
  },
  probe: (path, files) => isLuksImage(resolve(path), files),
};
