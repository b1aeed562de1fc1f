/**
 * Next to another TCMU runner (src/daemon/coexist.ts, serve.ts): finding
 * tcmu-runner by process name, and what the server does when the kernel did
 * not take its netlink reply (ENODEV): a device the kernel refused because
 * another runner answered first closes its LUN; a device made with
 * nl_reply_supported=-1 (the kernel waits for nobody) keeps serving.
 * Netlink is replaced at the server's seam, as in serve.test.ts.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { defaultSubtypes, describeRunners, findOtherRunners, readUioName, subtypesOfRunner } from '../../src/daemon/coexist.js';
import { Server } from '../../src/daemon/serve.js';
import { silentLogger } from '../../src/log.js';
import type { TcmuEvent } from '../../src/tcmu/netlink/tcmu-events.js';
import { waitFor } from '../tcmu/wait.js';
import { FakeNode, type FakeDevice } from './fake-node.js';
import { registerHandler } from '../../src/backstore/registry.js';
import { pino } from 'pino';

const MiB = 1 << 20;

describe('findOtherRunners', () => {
  let proc: string;
  beforeEach(() => {
    proc = mkdtempSync(join(tmpdir(), 'tcmu-proc-'));
  });
  afterEach(() => rmSync(proc, { recursive: true, force: true }));
  const task = (pid: string, comm?: string) => {
    mkdirSync(join(proc, pid));
    if (comm !== undefined) writeFileSync(join(proc, pid, 'comm'), `${comm}\n`);
  };

  it('finds tcmu-runner by its comm, not itself, not other names, not non-pid entries', () => {
    task('1', 'init');
    task('42', 'tcmu-runner');
    task('43', 'tcmu-runner-x');
    task('44'); // exited between readdir and read
    task('self', 'tcmu-runner');
    task('77', 'tcmu-runner');
    expect(findOtherRunners(proc, 77)).toEqual([{ pid: 42, name: 'tcmu-runner' }]);
    expect(describeRunners(findOtherRunners(proc, 1).sort((a, b) => a.pid - b.pid))).toBe('tcmu-runner (pid 42), tcmu-runner (pid 77)');
  });

  it('an unreadable /proc means no runner found (and no throw)', () => {
    expect(findOtherRunners(join(proc, 'missing'))).toEqual([]);
  });

  it('finds nothing unusual on this machine without throwing', () => {
    expect(Array.isArray(findOtherRunners())).toBe(true);
  });

  it('reads the subtypes a runner has loaded from its memory map, and serves the rest by default', () => {
    task('42', 'tcmu-runner');
    const lib = '/usr/lib/x86_64-linux-gnu/tcmu-runner';
    writeFileSync(
      join(proc, '42', 'maps'),
      [
        `7f01-7f02 r-xp 00000000 08:01 11 ${lib}/handler_rbd.so`,
        `7f02-7f03 r--p 00001000 08:01 11 ${lib}/handler_rbd.so`,
        `7f03-7f04 r-xp 00000000 08:01 12 ${lib}/handler_qcow.so`,
        '7f05-7f06 r-xp 00000000 08:01 13 /usr/lib/x86_64-linux-gnu/libc.so.6',
        '7f06-7f07 r-xp 00000000 08:01 14 /opt/x/handler_bad name.so',
      ].join('\n'),
    );
    expect(subtypesOfRunner(42, proc)).toEqual(['qcow', 'rbd']);
    const others = findOtherRunners(proc, 1);
    const { serve, left } = defaultSubtypes(['file', 'qcow2', 'ram', 'crypt', 'rbd'], others, proc);
    expect(serve).toEqual(['file', 'qcow2', 'ram', 'crypt']);
    expect([...left.keys()]).toEqual(['rbd']);
    expect(left.get('rbd')).toEqual({ pid: 42, name: 'tcmu-runner' });
  });

  it('a runner whose map cannot be read leaves every subtype to tcmu-ts', () => {
    task('42', 'tcmu-runner');
    expect(subtypesOfRunner(42, proc)).toEqual([]);
    expect(defaultSubtypes(['file', 'rbd'], findOtherRunners(proc, 1), proc).serve).toEqual(['file', 'rbd']);
  });
});

describe('Server: a netlink reply the kernel did not take', () => {
  let node: FakeNode;
  let server: Server;
  let replies: Array<{ kind: string; minor: number; status: number }>;
  /** What the fake kernel does with a reply: take it, or refuse it (ENODEV) after running `before`. */
  let refuse: ((ev: TcmuEvent) => void) | undefined;
  let lines: string[];

  beforeEach(() => {
    node = new FakeNode();
    lines = [];
    server = new Server({
      log: pino({ level: 'info' }, { write: (l: string) => lines.push(l) }),
      subtypes: new Set(['file', 'vanishing']),
      uioRoot: node.uioRoot,
      configfsRoot: node.configfsRoot,
    });
    replies = [];
    refuse = undefined;
    (server as unknown as { netlink: unknown }).netlink = {
      reply: async (ev: TcmuEvent, status: number) => {
        replies.push({ kind: ev.kind, minor: ev.minor, status });
        if (refuse) {
          refuse(ev);
          throw Object.assign(new Error('netlink: No such device'), { code: 'ENODEV' });
        }
      },
      close() {},
    };
  });
  afterEach(async () => {
    await server.stop();
    node.close();
  });

  const onEvent = (ev: TcmuEvent) => (server as unknown as { onEvent(ev: TcmuEvent): void }).onEvent(ev);
  function fileDevice(name: string): FakeDevice {
    const path = join(node.root, `${name}.img`);
    writeFileSync(path, Buffer.alloc(4 * MiB));
    return node.add({ name, devConfig: `file/${path}`, size: 4 * MiB });
  }

  it('ADDED answered first by another runner (the kernel dropped the device): the LUN opened for it closes', async () => {
    const dev = fileDevice('refused');
    expect(readUioName(dev.uio, node.uioRoot)).toMatch(/^tcm-user\/1\/refused\/file\//);
    refuse = () => node.remove(dev); // the other runner's ENOENT came first: the kernel unregisters the uio
    onEvent(node.event('added', dev));
    await waitFor(() => replies.length === 1, 'the reply');
    expect(replies[0]!.status).toBe(0); // tcmu-ts had opened it
    await waitFor(() => server.list().length === 0, 'the LUN of the refused device closes');
    expect(readUioName(dev.uio, node.uioRoot)).toBeUndefined();
  });

  it('ADDED of a device made with nl_reply_supported=-1 (nobody waited): the LUN keeps serving', async () => {
    const dev = fileDevice('kept');
    refuse = () => undefined; // the device stays
    onEvent(node.event('added', dev));
    await waitFor(() => replies.length === 1, 'the reply');
    // deviceVanishes() looks for ~2 s; afterwards the LUN is still there.
    await new Promise((r) => setTimeout(r, 2300));
    expect(server.list().map((l) => [l.id, l.state])).toEqual([['user_1/kept', 'serving']]);
  });

  it('a device the kernel drops while tcmu-ts opens it: a warning, ENODEV, no open failure counted', async () => {
    let dev: FakeDevice | undefined;
    registerHandler({
      name: 'vanishing',
      description: 'test: the kernel unregisters the device during open',
      open() {
        node.remove(dev!); // another runner's refusal came first
        throw Object.assign(new Error('open /dev/uioN: No such file or directory'), { code: 'ENOENT' });
      },
    });
    dev = node.add({ name: 'v', devConfig: 'vanishing/', size: 4 * MiB });
    onEvent(node.event('added', dev));
    await waitFor(() => replies.length === 1, 'the reply');
    expect(replies[0]!.status).toBe(-19);
    expect(server.list()).toEqual([]);
    const parsed = lines.map((l) => JSON.parse(l) as { level: number; msg: string });
    expect(parsed.filter((l) => l.level >= 50)).toEqual([]);
    expect(parsed.map((l) => l.msg)).toContain('device went away while tcmu-ts opened it; nothing to serve');
    expect([...(server.metricsSource().openFailures() as Map<string, number>).keys()]).toEqual([]);
  });

  it('events of subtypes tcmu-ts does not serve get no reply at all, whatever the event', async () => {
    const theirs = node.add({ name: 'q', devConfig: 'qcow//images/q.qcow', size: 4 * MiB });
    for (const kind of ['added', 'reconfig', 'removed'] as const) onEvent(node.event(kind, theirs));
    const mine = fileDevice('m');
    onEvent(node.event('added', mine));
    await waitFor(() => replies.length === 1, 'the reply for our own device');
    await new Promise((r) => setTimeout(r, 50));
    expect(replies.map((r) => r.minor)).toEqual([Number(mine.uio.slice(3))]);
    expect(theirs.opens).toBe(0);
  });
});
