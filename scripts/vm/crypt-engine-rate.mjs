// Guest side of `scripts/bench crypt-engine-vm`: the crypt layer's native
// aes-xts-plain64 engine (dist/src/crypto/xts.js, OpenSSL in the addon) on
// one core, MB/s (10^6 bytes) per CPU second, median of 5 rounds of 400 ms
// CPU, for the request sizes a LUN sees. Prints one @@XTS line per size;
// bench-crypt-engine.sh puts `cryptsetup benchmark` (the kernel's
// aes-xts-plain64 through AF_ALG) beside it in the same boot.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';

const { xtsEngine } = await import(join(process.env.TCMU_TS_ROOT, 'dist/src/crypto/xts.js'));
const engine = xtsEngine(randomBytes(64), 'native');

function rate(fn, bytesPerCall) {
  // Warm up first: under TCG the first calls also pay for translating the
  // cipher code, and V8 for compiling the caller.
  const warm = Date.now();
  while (Date.now() - warm < 300) fn();
  const results = [];
  for (let r = 0; r < 5; r++) {
    let bytes = 0;
    let used = 0;
    const start = process.cpuUsage();
    while (used < 400_000) {
      for (let i = 0; i < 4; i++) fn();
      bytes += 4 * bytesPerCall;
      const u = process.cpuUsage(start);
      used = u.user + u.system;
    }
    results.push(bytes / (used / 1e6) / 1e6);
  }
  results.sort((a, b) => a - b);
  return results[2];
}

for (const [request, sector] of [[4096, 512], [65536, 512], [1 << 20, 512], [1 << 20, 4096]]) {
  const buf = randomBytes(request);
  const enc = rate(() => engine.crypt(true, buf, sector, 0, sector / 512), request);
  const dec = rate(() => engine.crypt(false, buf, sector, 0, sector / 512), request);
  console.log(`@@XTS engine=${engine.kind} request=${request} sector=${sector} enc=${enc.toFixed(0)} dec=${dec.toFixed(0)}`);
}
