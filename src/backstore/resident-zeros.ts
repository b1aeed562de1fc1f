/**
 * Zero buffers for writes over data in place (discard and write-zeroes of
 * part of a cluster, zero-fill by writes): page-aligned, and every page
 * resident.
 *
 * Why: a buffered pwrite copies its source into the page cache with page
 * faults disabled, and stops short where a source page is not mapped at
 * that moment; the kernel then maps it and copies on. A SIGKILL in between
 * keeps the short part. Buffer.alloc memory is neither page-aligned nor
 * touched (large zeroed allocations come from fresh mappings), so such a
 * split fell inside a sector: test/handlers/qcow2/crash.test.ts found an
 * in-flight discard that left one sector with 464 zero bytes and 48 old
 * ones. With a page-aligned source, any stop is at a 4 KiB multiple of the
 * write, so on a sector boundary (TCMU data-area blocks, the other source,
 * are page-aligned too); filling it maps every page up front.
 *
 * WebAssembly.Memory is the page-aligned memory JS can allocate (its
 * buffer starts on a 64 KiB boundary). Each reserves address space, so
 * callers keep a few long-lived buffers and hand out subarrays.
 */
const WASM_PAGE = 64 * 1024;

export function residentZeros(size: number): Buffer {
  // Without WebAssembly (node --jitless), resident but not aligned: better than nothing, and never a failed start.
  if (typeof WebAssembly === 'undefined') return Buffer.allocUnsafe(size).fill(0);
  const pages = Math.max(1, Math.ceil(size / WASM_PAGE));
  const memory = new WebAssembly.Memory({ initial: pages, maximum: pages });
  return Buffer.from(memory.buffer, 0, size).fill(0);
}
