/** Opening an image with dirty-image repair wired in (the one place image.ts and check.ts meet). */
import { checkConsistency } from './check.js';
import { Qcow2Image, type OpenImageOptions } from './image.js';

export function openImage(path: string, opts: Omit<OpenImageOptions, 'repairDirty'>): Promise<Qcow2Image> {
  return Qcow2Image.open(path, {
    ...opts,
    repairDirty: async (img) => {
      await img.lock.run(() => checkConsistency(img, 'all'));
    },
  });
}
