/**
 * `scripts/bench crypt`: host throughput of the crypt layer's aes-xts-plain64
 * engines (src/crypto/xts.ts: native = OpenSSL loop in the addon, js =
 * batched ECB + tweaks in JS; one call per request either way) on one
 * core, next to
 *   - OpenSSL's own aes-256-xts driven one sector per cipher object from JS
 *     (what a naive layer would do),
 *   - `openssl speed -evp aes-256-xts` (C, no JS: the ceiling on this CPU),
 *   - `cryptsetup benchmark -c aes-xts-plain64` (the kernel's, via AF_ALG;
 *     printed as unavailable where the kernel lacks algif_skcipher).
 * MB/s = 10^6 bytes per CPU second, median of BENCH_ROUNDS (default 5) rounds
 * of BENCH_MS (default 400) ms of CPU each. Then the whole write/read path
 * on the host (./bench-crypt-io.ts). Not a test: numbers depend on the machine.
 */
import { spawnSync } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { formatLuks } from '../../src/crypto/luks/format.js';
import { readLuksHeader } from '../../src/crypto/luks/read-header.js';
import { unlockVolumeKey } from '../../src/crypto/luks/unlock.js';
import { xtsEngine } from '../../src/crypto/xts.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const MS = Number(process.env.BENCH_MS ?? 400);

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * MB/s per CPU second of this thread's process (user + system), like
 * `openssl speed` (which counts user CPU time unless -elapsed): on a shared
 * machine the wall clock also counts the time other processes had the core.
 */
function rate(fn: () => void, bytesPerCall: number): number {
  const results: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    let bytes = 0;
    const start = process.cpuUsage();
    let usedUs = 0;
    while (usedUs < MS * 1000) {
      for (let i = 0; i < 8; i++) fn();
      bytes += 8 * bytesPerCall;
      const u = process.cpuUsage(start);
      usedUs = u.user + u.system;
    }
    results.push(bytes / (usedUs / 1e6) / 1e6);
  }
  return median(results);
}

const volumeKey = randomBytes(64);
const nativeXts = xtsEngine(volumeKey, 'native');
const jsXts = xtsEngine(volumeKey, 'js');
if (nativeXts.kind !== 'native') console.log('(the addon lacks xtsCreate: rebuild it; the native columns show the JS engine)');

function perSector(encrypt: boolean, buf: Buffer, sectorSize: number): void {
  const iv = Buffer.alloc(16);
  for (let at = 0, s = 0; at < buf.length; at += sectorSize, s++) {
    iv.writeUInt32LE(s, 0);
    const c = encrypt ? createCipheriv('aes-256-xts', volumeKey, iv) : createDecipheriv('aes-256-xts', volumeKey, iv);
    c.update(buf.subarray(at, at + sectorSize)).copy(buf, at);
  }
}

function opensslSpeed(bytes: number): string {
  const r = spawnSync('openssl', ['speed', '-evp', 'aes-256-xts', '-bytes', String(bytes), '-seconds', '1'], { encoding: 'utf8' });
  const m = /aes-256-xts\s+([\d.]+)k/i.exec(r.stdout);
  return m ? ((Number(m[1]) * 1000) / 1e6).toFixed(0) : 'n/a';
}

function cryptsetupBench(): string {
  const r = spawnSync('cryptsetup', ['benchmark', '-c', 'aes-xts-plain64', '-s', '512'], { encoding: 'utf8' });
  const m = /aes-xts\s+\d+b\s+([\d.]+) MiB\/s\s+([\d.]+) MiB\/s/.exec(r.stdout);
  if (!m) return `unavailable here (${(r.stderr || r.stdout).trim().split('\n')[0]})`;
  const mb = (x: string) => ((Number(x) * 1048576) / 1e6).toFixed(0);
  return `encrypt ${mb(m[1]!)} MB/s, decrypt ${mb(m[2]!)} MB/s (512-bit key, 512-byte sectors)`;
}

console.log(`crypt layer aes-xts-plain64, 512-bit key, one core, MB/s per CPU second (median of ${ROUNDS} x ${MS} ms CPU); ${cpus().length} CPUs, load average ${loadavg().map((l) => l.toFixed(1)).join(' ')}`);
console.log('request   sector  native-enc native-dec  js-enc  js-dec  per-sector-js  openssl-speed(C)  native/openssl');
for (const [request, sectorSize] of [
  [4096, 512],
  [4096, 4096],
  [65536, 512],
  [1 << 20, 512],
  [1 << 20, 4096],
] as const) {
  const buf = randomBytes(request);
  const enc = rate(() => nativeXts.crypt(true, buf, sectorSize, 0, sectorSize / 512), request);
  const dec = rate(() => nativeXts.crypt(false, buf, sectorSize, 0, sectorSize / 512), request);
  const jsEnc = rate(() => jsXts.crypt(true, buf, sectorSize, 0, sectorSize / 512), request);
  const jsDec = rate(() => jsXts.crypt(false, buf, sectorSize, 0, sectorSize / 512), request);
  const naive = rate(() => perSector(false, buf, sectorSize), request);
  const label = request >= 1 << 20 ? `${request >> 20} MiB` : `${request >> 10} KiB`;
  const ossl = opensslSpeed(sectorSize);
  const ratio = ossl === 'n/a' ? 'n/a' : (Math.min(enc, dec) / Number(ossl)).toFixed(2);
  console.log(
    `${label.padEnd(9)} ${String(sectorSize).padEnd(7)} ${enc.toFixed(0).padStart(10)} ${dec.toFixed(0).padStart(10)}  ${jsEnc.toFixed(0).padStart(6)}  ${jsDec.toFixed(0).padStart(6)}  ${naive.toFixed(0).padStart(13)}  ${ossl.padStart(16)}  ${ratio.padStart(14)}`,
  );
}
console.log(`cryptsetup benchmark -c aes-xts-plain64: ${cryptsetupBench()}`);

/** The KDF of one open runs off the event loop: how long it takes, and how late timers fire meanwhile. */
async function kdfOffLoop(): Promise<void> {
  const size = (16 << 20) + 4096;
  const image = Buffer.alloc(size);
  const passphrase = Buffer.from('bench passphrase');
  const kdf = { type: 'argon2id', time: 4, memoryKiB: 256 * 1024, cpus: 2 } as const;
  await formatLuks(async (o, b) => void b.copy(image, o), size, { version: 2, passphrase, kdf, digestIterations: 100_000 });
  const read = async (o: number, l: number) => Buffer.from(image.subarray(o, o + l));
  const { header } = await readLuksHeader({ read, size, where: 'bench' });
  const delay = monitorEventLoopDelay({ resolution: 1 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 1);
  delay.enable();
  const start = process.hrtime.bigint();
  const { volumeKey } = await unlockVolumeKey(header, passphrase, read, 'bench');
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  delay.disable();
  clearInterval(timer);
  volumeKey.fill(0);
  console.log(
    `open with argon2id (time 4, 256 MiB, 2 threads) + pbkdf2 digest: ${ms.toFixed(0)} ms; meanwhile 1 ms timers fired ${ticks} times, ` +
      `event-loop delay p99 ${(delay.percentile(99) / 1e6).toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`,
  );
  // The same measurement with nothing running: what this machine's load alone costs.
  const idle = monitorEventLoopDelay({ resolution: 1 });
  let idleTicks = 0;
  const idleTimer = setInterval(() => idleTicks++, 1);
  idle.enable();
  await new Promise((r) => setTimeout(r, ms));
  idle.disable();
  clearInterval(idleTimer);
  console.log(`idle for as long: 1 ms timers fired ${idleTicks} times, event-loop delay p99 ${(idle.percentile(99) / 1e6).toFixed(1)} ms, max ${(idle.max / 1e6).toFixed(1)} ms`);
}
await kdfOffLoop();
await import('./bench-crypt-io.js');
