/**
 * Metrics end to end without a kernel: commands driven through the kernel
 * simulator into a ring engine (with SCSI emulation over the ram handler),
 * the engine's counters scraped over HTTP from the metrics server, and the
 * numbers compared with what was submitted.
 */
import { Buffer } from 'node:buffer';
import { afterAll, describe, expect, it } from 'vitest';
import { openDevConfig } from '../../src/backstore/registry.js';
import { ScsiDisk, deriveIdentity } from '../../src/scsi/index.js';
import { CommandCounters } from '../../src/tcmu/command-counters.js';
import { RingEngine } from '../../src/tcmu/ring-engine.js';
import { startMetricsServer, type LunMetricsView, type MetricsServer } from '../../src/daemon/metrics.js';
import { parseListenAddress } from '../../src/daemon/metrics-address.js';
import { silentLogger } from '../../src/log.js';
import { KernelSim } from '../sim/kernel-sim.js';
import { RamTarget, read10, write10 } from '../tcmu/ram-target.js';
import { waitFor } from '../tcmu/wait.js';

const BLOCK = 512;

/** Prometheus text -> Map of `name{labels}` -> value (labels as written by prom-client). */
function parseExposition(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

function cdb(bytes: number[], length: number): Buffer {
  const b = Buffer.alloc(length);
  bytes.forEach((v, i) => (b[i] = v));
  return b;
}

const sims: KernelSim[] = [];
const engines: RingEngine[] = [];
let server: MetricsServer | undefined;
afterAll(async () => {
  await server?.close();
  engines.forEach((e) => e.close());
  sims.forEach((s) => s.close());
});

describe('metrics endpoint', () => {
  it('serves per-LUN counters that match the commands driven through the simulator', async () => {
    // LUN A: the real SCSI emulation over the ram handler.
    const simA = KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true });
    sims.push(simA);
    const store = await openDevConfig('ram/', { size: 8 << 20, blockSize: BLOCK, readOnly: false, log: silentLogger });
    const disk = new ScsiDisk(store, deriveIdentity('metrics-test'));
    const countersA = new CommandCounters();
    const engineA = new RingEngine(simA.runnerMapping(), disk, { counters: countersA });
    engines.push(engineA);
    engineA.start();

    // LUN B: an asynchronous target with 2 slots, so the engine must hold back.
    const simB = KernelSim.create({ ringSize: 64 * 1024, dataSize: 4 << 20, ooo: true, readLen: true });
    sims.push(simB);
    const ram = new RamTarget(1024, 'manual');
    const countersB = new CommandCounters();
    const engineB = new RingEngine(simB.runnerMapping(), ram, { counters: countersB, maxInFlight: 2 });
    engines.push(engineB);
    engineB.start();

    const luns: LunMetricsView[] = [
      { id: 'user_0/a', counters: countersA, inFlight: 0, stuckEvents: 0 },
      { id: 'user_0/b', counters: countersB, inFlight: 0, stuckEvents: 3 },
    ];
    const source = {
      luns: () => luns.map((l) => ({ ...l, inFlight: (l.id.endsWith('a') ? engineA : engineB).stats.inFlight })),
      openFailures: () => new Map([['qcow2', 2]]),
      inlineWritePauses: () => 4,
    };
    server = await startMetricsServer({ host: '127.0.0.1', port: 0 }, source, silentLogger);

    // LUN A: TEST UNIT READY (answered with the power-on UNIT ATTENTION),
    // 5 WRITE(10) of 8 blocks, 7 READ(10) of 4 blocks, 1 READ past the end
    // (ILLEGAL REQUEST), 2 SYNCHRONIZE CACHE(10), 1 UNMAP, 1 INQUIRY.
    const results = [];
    results.push(await simA.submit(cdb([0x00], 6)));
    for (let i = 0; i < 5; i++) results.push(await simA.submit(write10(i * 8, 8), { out: Buffer.alloc(8 * BLOCK, i + 1) }));
    for (let i = 0; i < 7; i++) results.push(await simA.submit(read10(i * 4, 4), { inLength: 4 * BLOCK }));
    results.push(await simA.submit(read10((8 << 20) / BLOCK, 1), { inLength: BLOCK }));
    for (let i = 0; i < 2; i++) results.push(await simA.submit(cdb([0x35], 10)));
    const unmapList = Buffer.alloc(24);
    unmapList.writeUInt16BE(22, 0);
    unmapList.writeUInt16BE(16, 2);
    unmapList.writeBigUInt64BE(0n, 8);
    unmapList.writeUInt32BE(8, 16);
    results.push(await simA.submit(cdb([0x42, 0, 0, 0, 0, 0, 0, 0, 24], 10), { out: unmapList }));
    results.push(await simA.submit(cdb([0x12, 0, 0, 0, 96], 6), { inLength: 96 }));
    const statuses = results.map((r) => r.status);
    expect(statuses).toEqual([2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0]);

    // LUN B: 6 READs with 2 slots: the engine stops consuming twice at least.
    const pendingB = Array.from({ length: 6 }, (_, i) => simB.submit(read10(i, 1), { inLength: BLOCK }));
    for (let released = 0; released < 6; ) {
      await waitFor(() => ram.parked.length > 0, 'a parked command');
      released += ram.parked.length;
      ram.releaseParked();
    }
    expect((await Promise.all(pendingB)).map((r) => r.status)).toEqual([0, 0, 0, 0, 0, 0]);

    const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const m = parseExposition(await res.text());
    const a = (name: string, labels = '') => m.get(`tcmu_ts_${name}{lun="user_0/a"${labels}}`);
    expect(a('commands_total', ',op="read"')).toBe(8);
    expect(a('commands_total', ',op="write"')).toBe(5);
    expect(a('commands_total', ',op="flush"')).toBe(2);
    expect(a('commands_total', ',op="unmap"')).toBe(1);
    expect(a('commands_total', ',op="other"')).toBe(2);
    expect(a('read_bytes_total')).toBe(7 * 4 * BLOCK);
    expect(a('written_bytes_total')).toBe(5 * 8 * BLOCK);
    expect(a('command_errors_total', ',sense_key="unit_attention"')).toBe(1);
    expect(a('command_errors_total', ',sense_key="illegal_request"')).toBe(1);
    expect(a('commands_in_flight')).toBe(0);
    expect(a('back_pressure_events_total')).toBe(0);
    // Histograms: every timed command in exactly one bucket; +Inf equals _count equals the command count.
    for (const [op, n] of [['read', 8], ['write', 5], ['flush', 2]] as const) {
      expect(a('command_duration_seconds_count', `,op="${op}"`)).toBe(n);
      expect(m.get(`tcmu_ts_command_duration_seconds_bucket{lun="user_0/a",op="${op}",le="+Inf"}`)).toBe(n);
      expect(a('command_duration_seconds_sum', `,op="${op}"`)).toBeGreaterThanOrEqual(0);
    }
    const b = (name: string, labels = '') => m.get(`tcmu_ts_${name}{lun="user_0/b"${labels}}`);
    expect(b('commands_total', ',op="read"')).toBe(6);
    expect(b('read_bytes_total')).toBe(6 * BLOCK);
    expect(b('back_pressure_events_total')).toBeGreaterThanOrEqual(2);
    expect(b('stuck_events_total')).toBe(3);
    expect(b('command_duration_seconds_count', ',op="read"')).toBe(6);
    expect(m.get('tcmu_ts_handler_open_failures_total{handler="qcow2"}')).toBe(2);
    expect(m.get('tcmu_ts_inline_write_pauses_total')).toBe(4);
    // prom-client's process metrics, under our prefix.
    expect(m.get('tcmu_ts_process_cpu_user_seconds_total')).toBeGreaterThan(0);
    expect(m.has('tcmu_ts_nodejs_eventloop_lag_seconds')).toBe(true);

    expect((await fetch(`http://127.0.0.1:${server.port}/other`)).status).toBe(404);
  });
});

describe('metrics listen address', () => {
  it('accepts HOST:PORT and [IPv6]:PORT and names what is wrong otherwise', () => {
    expect(parseListenAddress('127.0.0.1:9470')).toEqual({ host: '127.0.0.1', port: 9470 });
    expect(parseListenAddress('[::1]:9470')).toEqual({ host: '::1', port: 9470 });
    expect(parseListenAddress('metrics.example:80')).toEqual({ host: 'metrics.example', port: 80 });
    expect(() => parseListenAddress('9470')).toThrow('"9470" is not HOST:PORT (e.g. 127.0.0.1:9470 or [::1]:9470)');
    expect(() => parseListenAddress('127.0.0.1:0')).toThrow('port 0 is not in 1-65535');
    expect(() => parseListenAddress('127.0.0.1:70000')).toThrow('port 70000 is not in 1-65535');
    expect(() => parseListenAddress('[1.2.3.4]:80')).toThrow("the part in brackets is not an IPv6 address");
    expect(() => parseListenAddress("bad_host!:80")).toThrow(`"bad_host!" is neither an IPv4 address nor a host name`);
    expect(() => parseListenAddress('a..b:80')).toThrow('neither an IPv4 address nor a host name');
  });
});
