/**
 * Which images write compressed (the handler's `compress=zlib|zstd`
 * option), kept beside the image rather than in it so the plain paths stay
 * untouched. Enabling checks that the image can hold what we would write.
 */
import { StorageError } from '../../src/backstore/errors.js';
import type { CompressionType } from './format.js';
import type { Qcow2Image } from './image.js';
import { forgetFreedCluster } from './packing.js';

export const COMPRESSION_TYPES: readonly CompressionType[] = ['zlib', 'zstd'];

const mode = new WeakMap<Qcow2Image, CompressionType>();

/** The codec new writes use, or undefined for plain (uncompressed) writes. */
export function writeCompression(img: Qcow2Image): CompressionType | undefined {
  return mode.get(img);
}

/**
 * Turn compressed writes on. The codec is the image's: qcow2 has one
 * compression_type per image (header), so `compress=zstd` on a zlib image
 * (every v2 image, and v3 images made without it) is refused, never
 * silently mixed. Encrypted images are refused too: qcow2 cannot compress
 * encrypted clusters (QEMU refuses the combination as well).
 */
export function enableWriteCompression(img: Qcow2Image, type: string): void {
  if (!(COMPRESSION_TYPES as readonly string[]).includes(type)) {
    throw new StorageError('EINVAL', `qcow2: compress=${type}: expected zlib or zstd`);
  }
  if (img.header.cryptMethod !== 0) {
    throw new StorageError('EINVAL', `qcow2: ${img.path} is encrypted; compression and encryption cannot be combined on one qcow2 image`);
  }
  if (img.header.compressionType !== type) {
    const how = type === 'zstd' ? 'tcmu-ts image create --compress zstd, or qemu-img convert -c -O qcow2 -o compression_type=zstd' : 'use compress=zstd for it';
    throw new StorageError(
      'EINVAL',
      `qcow2: ${img.path} has compression_type ${img.header.compressionType} (qcow2 v${img.version}); compress=${type} needs an image whose compression_type is ${type} (${how})`,
    );
  }
  mode.set(img, type as CompressionType);
  img.onClusterFreed = (off) => forgetFreedCluster(img, off);
}
