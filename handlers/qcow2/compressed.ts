/**
 * Compressed cluster payloads: zlib raw deflate (window -12 in QEMU terms,
 * i.e. no zlib header) or zstd frames. The stored bytes are rounded up to
 * 512-byte sectors, so trailing garbage after the stream is normal and must
 * be ignored; decompression stops once a full cluster has been produced.
 */
import { constants, inflateRawSync } from 'node:zlib';
import * as zstd from 'zstd-napi/binding.js';
import { StorageError } from '../../src/backstore/errors.js';
import type { CompressionType } from './format.js';

export function decompressCluster(type: CompressionType, input: Buffer, clusterSize: number): Buffer {
  let out: Buffer;
  try {
    out = type === 'zlib' ? inflateZlib(input, clusterSize) : inflateZstd(input, clusterSize);
  } catch (err) {
    // The library's own text (Node error codes) stays in `cause`, out of the message.
    const tooBig = (err as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE';
    throw new StorageError('EIO', `qcow2: cannot decompress ${type} cluster: ${tooBig ? 'data inflates beyond one cluster' : 'corrupt compressed data'}`, {
      cause: err,
    });
  }
  if (out.length !== clusterSize) {
    throw new StorageError('EIO', `qcow2: compressed cluster decompressed to ${out.length} bytes, expected ${clusterSize}`);
  }
  return out;
}

function inflateZlib(input: Buffer, clusterSize: number): Buffer {
  // SYNC_FLUSH: the payload may stop mid-sector without an error being raised for missing trailing data.
  return inflateRawSync(input, { finishFlush: constants.Z_SYNC_FLUSH, maxOutputLength: clusterSize });
}

function inflateZstd(input: Buffer, clusterSize: number): Buffer {
  const out = Buffer.alloc(clusterSize);
  let inAt = 0;
  let outAt = 0;
  // QEMU may write one or more frames; walk them until the cluster is full.
  while (outAt < clusterSize && inAt < input.length) {
    const frame = input.subarray(inAt);
    const frameSize = zstd.findFrameCompressedSize(frame);
    outAt += zstd.decompress(out.subarray(outAt), frame.subarray(0, frameSize));
    inAt += frameSize;
  }
  return out.subarray(0, outAt);
}
