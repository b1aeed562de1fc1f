/**
 * Opening the backing file or block device and fitting it to the LUN:
 * refuse a file smaller than the LUN unless asked to extend it, refuse a
 * missing file unless asked to create it. Every refusal says both sizes or
 * the option that would change the outcome.
 */
import fs from 'node:fs';
import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { ConfigError } from '../../src/backstore/config-error.js';
import { ConfinementError, type FileOpener, type OpenFileOptions } from '../../src/backstore/confine.js';
import { truncate } from '../../src/io/vector-io.js';

export interface BackingRequest {
  path: string;
  /** LUN size in bytes from the kernel; undefined means "use the file's size". */
  lunSize: number | undefined;
  blockSize: number;
  readOnly: boolean;
  create: boolean;
  extend: boolean;
  /** Opens the file confined to the allowed directories (OpenContext.files). */
  files: FileOpener;
}

export interface BackingFile {
  fd: number;
  /** Bytes the LUN exposes. */
  lunSize: number;
  /** Bytes the file or device holds (>= lunSize). */
  fileSize: number;
  isBlockDevice: boolean;
}


function fstat(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, stats) => (err ? reject(err) : resolve(stats))));
}

/** Linux dev_t encoding (glibc gnu_dev_major/minor), in BigInt because it can exceed 32 bits. */
function majorMinor(rdev: number): string {
  const dev = BigInt(rdev);
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/** Node has no BLKGETSIZE64; sysfs reports every block device's size in 512-byte sectors. */
async function blockDeviceSize(path: string, rdev: number): Promise<number> {
  const sysfs = `/sys/dev/block/${majorMinor(rdev)}/size`;
  try {
    return Number((await readFile(sysfs, 'utf8')).trim()) * 512;
  } catch (err) {
    throw new ConfigError(`file: cannot read the size of block device ${path} from ${sysfs}: ${(err as Error).message}`, { cause: err });
  }
}

async function openOrCreate(request: BackingRequest): Promise<{ fd: number; created: boolean }> {
  const { path, readOnly, create } = request;
  const mode: OpenFileOptions = { write: !readOnly };
  try {
    return { fd: await request.files.openFd(path, mode), created: false };
  } catch (err) {
    if (err instanceof ConfinementError) throw err; // keeps code EACCES for the kernel's answer
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      throw new ConfigError(`file: cannot open ${path}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (!create) throw new ConfigError(`file: ${path} does not exist (add ;create=1 to create it)`);
  if (readOnly) throw new ConfigError(`file: ${path} does not exist and the LUN is read-only, so it cannot be created`);
  if (request.lunSize === undefined) throw new ConfigError(`file: cannot create ${path} without knowing the LUN size (dev_size)`);
  try {
    // O_EXCL: if someone created it meanwhile, refuse rather than size a file we did not make.
    return { fd: await request.files.openFd(path, { ...mode, create: true }), created: true };
  } catch (err) {
    if (err instanceof ConfinementError) throw err;
    throw new ConfigError(`file: cannot create ${path}: ${(err as Error).message}`, { cause: err });
  }
}

async function fitToLun(request: BackingRequest, fd: number, created: boolean): Promise<BackingFile> {
  const { path, blockSize } = request;
  const stats = await fstat(fd);
  const isBlockDevice = stats.isBlockDevice();
  if (!isBlockDevice && !stats.isFile()) throw new ConfigError(`file: ${path} is neither a regular file nor a block device`);
  let fileSize = isBlockDevice ? await blockDeviceSize(path, stats.rdev) : stats.size;
  const lunSize = request.lunSize ?? fileSize;
  if (lunSize <= 0 || lunSize % blockSize !== 0) {
    const source = request.lunSize === undefined ? `the size of ${path}` : 'the LUN size';
    throw new ConfigError(`file: ${source} (${lunSize} bytes) is not a positive multiple of the block size ${blockSize}`);
  }
  if (fileSize < lunSize) {
    if (!created && !request.extend) {
      throw new ConfigError(`file: ${path} is ${fileSize} bytes, smaller than the LUN (${lunSize} bytes); add ;extend=1 to grow it`);
    }
    if (isBlockDevice) throw new ConfigError(`file: block device ${path} is ${fileSize} bytes, smaller than the LUN (${lunSize} bytes), and cannot be extended`);
    if (request.readOnly) throw new ConfigError(`file: ${path} is ${fileSize} bytes, smaller than the LUN (${lunSize} bytes), and the LUN is read-only so it cannot be extended`);
    await truncate(fd, lunSize);
    fileSize = lunSize;
  }
  return { fd, lunSize, fileSize, isBlockDevice };
}

/** Open `request.path` and make sure it can hold the LUN; the fd is closed again on any refusal. */
export async function openBackingFile(request: BackingRequest): Promise<BackingFile> {
  if (!isAbsolute(request.path)) {
    throw new ConfigError(`file: "${request.path}" is not an absolute path (dev_config is file//<absolute path>)`);
  }
  const { fd, created } = await openOrCreate(request);
  try {
    return await fitToLun(request, fd, created);
  } catch (err) {
    fs.closeSync(fd);
    // Do not leave behind an empty file that only this failed open created.
    if (created) await request.files.removeFile(request.path);
    throw err;
  }
}
