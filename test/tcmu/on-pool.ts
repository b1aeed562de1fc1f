/**
 * Completes a command GOOD in its ring from a libuv pool thread, as librbd's
 * callback thread does (the addon's test entry point): resolves to what the
 * ring completer returned (1 done or handed over, 0 not done).
 */
import { native } from '../../src/native.js';
import type { InRing } from '../../src/scsi/command.js';

export function onPool(inRing: InRing): Promise<number> {
  return new Promise((resolve, reject) =>
    native().ringCompleteGoodOnPool(inRing.ring, inRing.index, inRing.cmdId, (err, done) => (err ? reject(err) : resolve(done))),
  );
}
