/**
 * What a test file's tests open (kernel simulators, ring engines), closed
 * after each test, the last opened first (an engine before its simulator).
 */
import { afterEach } from 'vitest';

export function closedAfterEach(): { track<T extends { close(): void }>(opened: T): T } {
  const open: { close(): void }[] = [];
  afterEach(() => {
    for (const o of open.splice(0).reverse()) o.close();
  });
  return {
    track(opened) {
      open.push(opened);
      return opened;
    },
  };
}
