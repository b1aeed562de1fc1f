import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Two projects: `unit` runs without root or a kernel (simulator, SCSI tables,
// handlers, qemu-img oracles); `kernel` boots the QEMU test bed and drives the
// real target_core_user module. `npm test` runs both.
export default defineConfig({
  test: {
    projects: [
      {
        test: {
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: ['test/kernel/**'],
          testTimeout: 60_000,
          hookTimeout: 60_000,
          // Vitest's default (CPUs - 1) is one worker on the 2-core CI machine, but the
          // unit files spend much of their time waiting on qemu-img, cryptsetup,
          // child daemons and disk syncs: two workers there cut the suite's wall time.
          maxWorkers: Math.max(2, availableParallelism() - 1),
        },
      },
      {
        test: {
          name: 'kernel',
          include: ['test/kernel/**/*.test.ts'],
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
