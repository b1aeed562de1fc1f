// The simulator lives in src/ so the benchmark (compiled to dist/) can run it
// in a worker; tests import it from here.
export * from '../../src/tcmu/sim/kernel-sim.js';
export * from '../../src/tcmu/sim/data-blocks.js';
