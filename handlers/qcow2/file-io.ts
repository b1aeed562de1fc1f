/**
 * Positional I/O on the image file with the loops Node leaves to us:
 * short reads/writes are retried, reads past EOF come back as zeros (a
 * cluster allocated at the end of the file may not be written yet).
 */
import type { FileHandle } from 'node:fs/promises';
import { sharedUringIo } from '../../src/io/uring-io.js';
import { iovLength } from '../../src/iov.js';

/**
 * Guest data goes through the process-wide io_uring when there is one (one
 * submit per ring batch instead of a thread-pool hand-off per command, see
 * src/io/uring-io.ts); metadata and the rare end-of-file case use the
 * FileHandle paths below.
 */
const dataRing = () => sharedUringIo();

/** Fill `buf` from `pos`; bytes beyond the end of the file read as zeros. */
export async function readFull(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, pos + done);
    if (bytesRead === 0) {
      buf.fill(0, done);
      return;
    }
    done += bytesRead;
  }
}

export async function writeFull(fh: FileHandle, buf: Buffer, pos: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesWritten } = await fh.write(buf, done, buf.length - done, pos + done);
    done += bytesWritten;
  }
}

/** One preadv straight into the caller's buffers (zero copy); falls back to per-buffer reads on a short read. */
export async function readvFull(fh: FileHandle, bufs: readonly Buffer[], pos: number): Promise<void> {
  const ring = dataRing();
  if (ring) {
    try {
      return await ring.read(fh.fd, bufs, pos);
    } catch (err) {
      // A cluster at the end of the file may be allocated but not written
      // yet: the path below reads what exists and zero-fills the rest.
      if (!(err as { endOfFile?: boolean }).endOfFile) throw err;
    }
  }
  if (bufs.length === 1) return readFull(fh, bufs[0]!, pos);
  const want = iovLength(bufs);
  const { bytesRead } = await fh.readv(bufs, pos);
  if (bytesRead === want) return;
  let at = pos;
  for (const b of bufs) {
    await readFull(fh, b, at);
    at += b.length;
  }
}

/** One pwritev of the caller's buffers; finishes a short write buffer by buffer. */
export async function writevFull(fh: FileHandle, bufs: readonly Buffer[], pos: number): Promise<void> {
  const ring = dataRing();
  if (ring) return ring.write(fh.fd, bufs, pos);
  if (bufs.length === 1) return writeFull(fh, bufs[0]!, pos);
  const want = iovLength(bufs);
  const { bytesWritten } = await fh.writev(bufs as Buffer[], pos);
  if (bytesWritten === want) return;
  let skip = bytesWritten;
  let at = pos;
  for (const b of bufs) {
    if (skip >= b.length) {
      skip -= b.length;
    } else {
      await writeFull(fh, b.subarray(skip), at + skip);
      skip = 0;
    }
    at += b.length;
  }
}
