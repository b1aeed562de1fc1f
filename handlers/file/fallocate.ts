/**
 * fallocate(2) for the file handler, behind a small interface so tests can
 * inject a failing one (EOPNOTSUPP) and the handler still loads where the
 * native addon is not built. The addon's call is synchronous: it blocks the
 * event loop for the syscall, which for hole punching and zeroing on local
 * filesystems is a metadata update, not data I/O.
 */
import { native } from '../../src/native.js';

export interface Fallocator {
  /** Deallocate [offset, offset+length): reads return zeros, the file size is unchanged. */
  punchHole(fd: number, offset: number, length: number): void;
  /** Make [offset, offset+length) read as zeros, keeping it allocated; file size unchanged. */
  zeroRange(fd: number, offset: number, length: number): void;
}

/** The addon's fallocate, or undefined when the addon (or its fallocate) is missing. */
export function nativeFallocator(): Fallocator | undefined {
  let binding;
  try {
    binding = native();
  } catch {
    return undefined;
  }
  if (typeof binding.fallocate !== 'function') return undefined;
  const keepSize = binding.FALLOC_FL_KEEP_SIZE;
  const punch = binding.FALLOC_FL_PUNCH_HOLE | keepSize;
  const zero = binding.FALLOC_FL_ZERO_RANGE | keepSize;
  return {
    punchHole: (fd, offset, length) => binding.fallocate(fd, punch, offset, length),
    zeroRange: (fd, offset, length) => binding.fallocate(fd, zero, offset, length),
  };
}

/** The filesystem (or device) does not implement the requested mode. */
export function isUnsupported(err: unknown): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  // Linux has one errno for both names (95); libuv spells it ENOTSUP.
  return code === 'EOPNOTSUPP' || code === 'ENOTSUP';
}
