/**
 * Prometheus metrics for `serve --metrics HOST:PORT` (text format, prom-client).
 * Every per-LUN number lives in plain counters the ring engine and the LUN
 * watchdog update (tcmu/command-counters.ts, RingEngineStats); this module
 * only reads them when a scrape arrives and does all the naming and
 * formatting then. Names follow the Prometheus conventions with the prefix
 * tcmu_ts_; process metrics come from prom-client's default collectors.
 *
 * A LUN that stops being served disappears from the output (its series end),
 * as Prometheus expects of a target whose labelled children go away.
 */
import { createServer, type Server as HttpServer } from 'node:http';
import type { Logger } from 'pino';
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  type CommandCounters,
  LATENCY_BOUNDS_SECONDS,
  LATENCY_BUCKETS,
  OP_GROUPS,
  SENSE_KEY_NAMES,
  TIMED_GROUPS,
} from '../tcmu/command-counters.js';
import type { ListenAddress } from './metrics-address.js';

export const PREFIX = 'tcmu_ts_';

/** What a scrape reads of one served LUN. */
export interface LunMetricsView {
  id: string;
  counters: CommandCounters;
  inFlight: number;
  stuckEvents: number;
}

export interface MetricsSource {
  luns(): Iterable<LunMetricsView>;
  /** Handler opens that failed since start, by handler (subtype). */
  openFailures(): ReadonlyMap<string, number>;
  /** Times small writes went back from the event loop to the io_uring because one was made to wait (src/io/inline-write-guard.ts). */
  inlineWritePauses(): number;
}

interface Sample {
  labels: Record<string, string>;
  value: number;
  metricName?: string;
}

type MetricType = 'counter' | 'gauge' | 'histogram';

/**
 * A metric whose samples are computed on scrape. prom-client's Registry
 * accepts any object with name/help/type and a get() giving the samples
 * (its own Counter/Histogram are such objects); ours have no per-sample
 * state of their own to keep in step with the engine's counters.
 */
class ScrapedMetric {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: MetricType,
    private readonly samples: () => Sample[],
  ) {}

  get(): { name: string; help: string; type: MetricType; values: Sample[]; aggregator: string } {
    return { name: this.name, help: this.help, type: this.type, values: this.samples(), aggregator: this.aggregator };
  }

  reset(): void {}
}

const TIMED_OPS = OP_GROUPS.slice(0, TIMED_GROUPS);
const LE_LABELS = [...LATENCY_BOUNDS_SECONDS.map((s) => String(Number(s.toPrecision(6)))), '+Inf'];

function perLun(source: MetricsSource, value: (lun: LunMetricsView) => number): Sample[] {
  return [...source.luns()].map((lun) => ({ labels: { lun: lun.id }, value: value(lun) }));
}

function latencySamples(source: MetricsSource): Sample[] {
  const name = `${PREFIX}command_duration_seconds`;
  const out: Sample[] = [];
  for (const lun of source.luns()) {
    const c = lun.counters;
    TIMED_OPS.forEach((op, g) => {
      let cumulative = 0;
      for (let b = 0; b < LATENCY_BUCKETS; b++) {
        cumulative += c.latencyCounts[g * LATENCY_BUCKETS + b]!;
        out.push({ metricName: `${name}_bucket`, labels: { lun: lun.id, op, le: LE_LABELS[b]! }, value: cumulative });
      }
      out.push({ metricName: `${name}_sum`, labels: { lun: lun.id, op }, value: c.latencySumMs[g]! / 1000 });
      out.push({ metricName: `${name}_count`, labels: { lun: lun.id, op }, value: cumulative });
    });
  }
  return out;
}

/** A registry holding every tcmu-ts metric plus the process metrics. */
export function createMetricsRegistry(source: MetricsSource): Registry {
  const registry = new Registry();
  const add = (name: string, help: string, type: MetricType, samples: () => Sample[]) =>
    registry.registerMetric(new ScrapedMetric(`${PREFIX}${name}`, help, type, samples) as never);

  add('commands_total', 'SCSI commands completed, by LUN and operation group.', 'counter', () =>
    [...source.luns()].flatMap((lun) => OP_GROUPS.map((op, g) => ({ labels: { lun: lun.id, op }, value: lun.counters.commandCount(g) }))),
  );
  add('read_bytes_total', 'Bytes transferred by READ commands that completed GOOD.', 'counter', () => perLun(source, (l) => l.counters.bytes[0]!));
  add('written_bytes_total', 'Bytes transferred by WRITE commands that completed GOOD.', 'counter', () => perLun(source, (l) => l.counters.bytes[1]!));
  add('command_errors_total', 'Commands that did not complete GOOD, by sense key (status_without_sense: BUSY, RESERVATION CONFLICT, ...).', 'counter', () =>
    [...source.luns()].flatMap((lun) =>
      SENSE_KEY_NAMES.map((key, k) => ({ labels: { lun: lun.id, sense_key: key }, value: lun.counters.errors[k]! })).filter((s) => s.value > 0),
    ),
  );
  add('command_duration_seconds', 'Time from consuming a command from the ring to completing it (resolution: the ring batch).', 'histogram', () =>
    latencySamples(source),
  );
  add('commands_in_flight', 'Commands consumed from the ring and not yet completed.', 'gauge', () => perLun(source, (l) => l.inFlight));
  add('back_pressure_events_total', 'Times the LUN stopped taking commands from the ring because every command slot was busy.', 'counter', () =>
    perLun(source, (l) => l.counters.backPressureEvents),
  );
  add('stuck_events_total', 'Times the LUN had commands in flight and completed none for 5 s.', 'counter', () => perLun(source, (l) => l.stuckEvents));
  add('handler_open_failures_total', 'LUN opens that failed (bad dev_config, missing or refused file, broken image), by handler.', 'counter', () =>
    [...source.openFailures()].map(([handler, value]) => ({ labels: { handler }, value })),
  );
  add(
    'inline_write_pauses_total',
    'Times small writes were sent back from the event loop to the io_uring for 5 s because the kernel made one wait (dirty-page throttling, memory reclaim).',
    'counter',
    () => [{ labels: {}, value: source.inlineWritePauses() }],
  );
  collectDefaultMetrics({ register: registry, prefix: PREFIX });
  return registry;
}

export interface MetricsServer {
  /** The address actually bound (port 0 picks a free one). */
  readonly port: number;
  close(): Promise<void>;
}

/** Serve GET /metrics on `address`; anything else is 404. */
export async function startMetricsServer(address: ListenAddress, source: MetricsSource, log: Logger): Promise<MetricsServer> {
  const registry = createMetricsRegistry(source);
  const server: HttpServer = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url !== '/metrics' && !req.url?.startsWith('/metrics?'))) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('tcmu-ts: metrics are at /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (err: unknown) => {
        log.error({ err }, 'metrics scrape failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n');
      },
    );
  });
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(address.port, address.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => log.error({ err }, 'metrics server error'));
  const bound = server.address();
  const port = typeof bound === 'object' && bound ? bound.port : address.port;
  log.info({ host: address.host, port }, 'metrics at /metrics');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
