/**
 * Reading a passphrase file named on the command line (`image create
 * --key-file F`), as cryptsetup's --key-file: every byte, no newline
 * stripping. Refused when group or others may read it, empty, or larger
 * than cryptsetup's limit. The caller wipes the returned buffer.
 */
import { resolve } from 'node:path';
import type { FileOpener } from '../backstore/confine.js';
import { MAX_LUKS_KEY_FILE } from '../config/keyring.js';
import { LuksError } from './luks/errors.js';

export async function readKeyFile(path: string, files: FileOpener): Promise<Buffer> {
  const fh = await files.openHandle(resolve(path));
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new LuksError('EINVAL', `key file ${path} is not a regular file`);
    if ((st.mode & 0o077) !== 0) {
      throw new LuksError('EINVAL', `key file ${path} is open to group or others (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}): chmod go= ${path}`);
    }
    if (st.size > MAX_LUKS_KEY_FILE) throw new LuksError('EINVAL', `key file ${path} is larger than ${MAX_LUKS_KEY_FILE} bytes`);
    const buf = Buffer.alloc(st.size);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    if (bytesRead === 0) throw new LuksError('EINVAL', `key file ${path} is empty`);
    return buf.subarray(0, bytesRead);
  } finally {
    await fh.close();
  }
}
