/**
 * A private io_uring for the I/O tests, or null where this machine has none:
 * those tests then skip, outside CI only (CI must have io_uring, so there
 * the refusal fails the test file loudly).
 */
import type { InlineWriteGuard } from '../../src/io/inline-write-guard.js';
import { UringVectorIo } from '../../src/io/uring-io.js';
import { native } from '../../src/native.js';

export function ringOrNull(guard?: InlineWriteGuard): UringVectorIo | null {
  try {
    return new UringVectorIo(native().ioRingCreate(16), guard);
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (process.env.CI && code !== undefined) throw err;
    console.warn(`io_uring unavailable here (${String(err)}): its tests are skipped`);
    return null;
  }
}
