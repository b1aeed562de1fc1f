import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

// Three projects: `unit` runs without root or a kernel (simulator, SCSI tables,
// handlers, qemu-img oracles); `kernel` boots the QEMU test bed and drives the
// real target_core_user module. `npm test` runs both. `kernel-long` holds the
// VM tests that need a whole environment built in the guest (a Ceph cluster;
// tens of MiB of real files through a compressing LUN): about 15 minutes under
// emulation, more than the CI budget leaves, so they run with
// `npm run test:kernel:long` (see the README, "The VM test bed").
const LONG_KERNEL_TESTS = ['test/kernel/rbd-lun.test.ts', 'test/kernel/rbd-ha.test.ts', 'test/kernel/rbd-gateways.test.ts', 'test/kernel/compress-lun.test.ts'];
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
          exclude: LONG_KERNEL_TESTS,
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          fileParallelism: false,
        },
      },
      {
        test: {
          name: 'kernel-long',
          include: LONG_KERNEL_TESTS,
          testTimeout: 20 * 60_000,
          hookTimeout: 20 * 60_000,
          fileParallelism: false,
        },
      },
    ],
  },
});
