/**
 * The targetcli D-Bus service against a real dbus-daemon (a private bus):
 * what targetcli-fb sees (GetManagedObjects, ConfigDesc, CheckConfig), the
 * enable-time validation CheckConfig runs, the shipped bus policy, and
 * targetcli's own Python code listing and checking through the service.
 */
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import dbus from 'dbus-next';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { registerUserHandler } from '../../src/backstore/registry.js';
import { BUS_NAME, ROOT_PATH, HANDLER_INTERFACE } from '../../src/daemon/dbus-service.js';
import { startTargetcliService, type TargetcliService } from '../../src/daemon/dbus-start.js';
import { silentLogger } from '../../src/log.js';
import { pino } from 'pino';
import { hasDbusDaemon, startPrivateBus, type PrivateBus } from './private-bus.js';

const CI = process.env.CI === 'true';
const haveBus = hasDbusDaemon();
if (!haveBus && CI) throw new Error('dbus-daemon is missing (Debian package dbus-daemon; scripts/setup.sh installs it)');
const SYSTEM_PYTHON = '/usr/bin/python3';
const haveTargetcli = spawnSync(SYSTEM_PYTHON, ['-c', 'import targetcli.ui_backstore'], { stdio: 'ignore' }).status === 0;
const haveQemuImg = spawnSync('qemu-img', ['--version'], { stdio: 'ignore' }).status === 0;

const root = mkdtempSync(join(tmpdir(), 'tcmu-dbus-'));
const allowed = join(root, 'allowed');
const outside = join(root, 'outside');
mkdirSync(allowed);
mkdirSync(outside);
writeFileSync(join(allowed, 'disk.img'), Buffer.alloc(1 << 20));
writeFileSync(join(outside, 'secret.img'), Buffer.alloc(1 << 20));
writeFileSync(join(allowed, 'garbage.qcow2'), Buffer.alloc(4096, 0x5a));
// A user handler from the config ([daemon] handlers): listed like the built-ins.
writeFileSync(
  join(allowed, 'mine.mjs'),
  `export default { name: 'mine', description: 'a user handler', open(config) { if (config !== 'ok') throw new Error('mine: only "ok" is valid'); return { size: 4096, blockSize: 512, read() {}, close() {} }; } };`,
);

const sha = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

describe.skipIf(!haveBus)('D-Bus service for targetcli', () => {
  let bus: PrivateBus;
  let service: TargetcliService | undefined;
  let client: dbus.MessageBus;

  beforeAll(async () => {
    bus = await startPrivateBus();
    registerUserHandler('mine', join(allowed, 'mine.mjs'));
    service = await startTargetcliService({
      log: silentLogger,
      subtypes: new Set(['file', 'qcow2', 'ram', 'mine']),
      allowedDirs: [allowed],
      busAddress: bus.address,
    });
    client = dbus.sessionBus({ busAddress: bus.address });
  });
  afterAll(() => {
    client?.disconnect();
    service?.close();
    bus?.stop();
  });

  async function check(subtype: string, devConfig: string): Promise<[boolean, string]> {
    const obj = await client.getProxyObject(BUS_NAME, `${ROOT_PATH}/${subtype}`);
    return (await obj.getInterface(HANDLER_INTERFACE).CheckConfig(devConfig)) as [boolean, string];
  }

  it('owns org.kernel.TCMUService1 and lists one object per handler with its ConfigDesc', async () => {
    expect(service?.current).toBeDefined();
    const mgr = await client.getProxyObject(BUS_NAME, ROOT_PATH);
    const managed = await mgr.getInterface('org.freedesktop.DBus.ObjectManager').GetManagedObjects();
    expect(Object.keys(managed).sort()).toEqual(['file', 'mine', 'qcow2', 'ram'].map((s) => `${ROOT_PATH}/${s}`));
    const desc = (s: string) => managed[`${ROOT_PATH}/${s}`][HANDLER_INTERFACE].ConfigDesc.value as string;
    expect(desc('file')).toMatch(/^tcmu-ts file: regular file.*cfgstring: \/absolute\/path/);
    expect(desc('qcow2')).toContain('qcow2 v2/v3 images');
    expect(desc('mine')).toBe('tcmu-ts mine: a user handler');
    // The property is readable on the object itself too (Gio proxies read it so).
    const file = await client.getProxyObject(BUS_NAME, `${ROOT_PATH}/file`);
    const props = file.getInterface('org.freedesktop.DBus.Properties');
    expect((await props.Get(HANDLER_INTERFACE, 'ConfigDesc')).value).toBe(desc('file'));
  });

  it('CheckConfig accepts what enable would accept and says why it refuses the rest', async () => {
    expect(await check('file', `file/${allowed}/disk.img`)).toEqual([true, 'success']);
    expect(await check('ram', 'ram/')).toEqual([true, 'success (the LUN size comes from the kernel at enable)']);
    expect(await check('ram', 'ram/;size=1G')).toEqual([true, 'success']);
    expect(await check('mine', 'mine/ok')).toEqual([true, 'success']);

    const outsideRefusal = await check('file', `file/${outside}/secret.img`);
    expect(outsideRefusal[0]).toBe(false);
    expect(outsideRefusal[1]).toContain('is not under any allowed directory');
    const escape = await check('file', `file/${allowed}/../outside/secret.img`);
    expect(escape).toEqual([false, expect.stringContaining('resolves outside the allowed directories')]);
    expect(await check('file', `file/${allowed}/disk.img;bogus=1`)).toEqual([false, 'file: unknown option "bogus" (allowed: create, extend, io)']);
    expect(await check('file', `file/${allowed}/nope.img`)).toEqual([false, `file: ${allowed}/nope.img does not exist (add ;create=1 to create it)`]);
    expect(await check('file', 'file/relative.img')).toEqual([false, 'file: "relative.img" is not an absolute path (dev_config is file//<absolute path>)']);
    expect(await check('file', 'file')).toEqual([false, expect.stringContaining("has no '/'")]);
    expect(await check('ram', 'ram/;size=lots')).toEqual([false, expect.stringContaining('ram: option size="lots" is not a size')]);
    expect(await check('ram', `file/${allowed}/disk.img`)).toEqual([false, expect.stringContaining('is for handler "file", but was checked by the "ram" handler')]);
    expect(await check('mine', 'mine/bad')).toEqual([false, 'mine: only "ok" is valid']);
    expect(await check('qcow2', `qcow2/${allowed}/garbage.qcow2`)).toEqual([false, expect.stringMatching(/qcow2/i)]);
  });

  it('CheckConfig of ;create=1 checks where the file would go and creates nothing', async () => {
    expect(await check('file', `file/${allowed}/new.img;create=1`)).toEqual([true, `success (${allowed}/new.img will be created when the LUN is enabled)`]);
    expect(existsSync(join(allowed, 'new.img'))).toBe(false);
    expect(await check('file', `file/${outside}/new.img;create=1`)).toEqual([false, expect.stringContaining('is not under any allowed directory')]);
    expect(await check('file', `file/${allowed}/no-such-dir/new.img;create=1`)).toEqual([false, expect.stringContaining('no-such-dir')]);
    expect(await check('file', `file/${allowed}/new.img;create=1;bogus=1`)).toEqual([false, 'file: unknown option "bogus" (allowed: create, extend, io)']);
    expect(existsSync(join(outside, 'new.img'))).toBe(false);
  });

  it.skipIf(!haveQemuImg && !CI)('CheckConfig reads a qcow2 header without changing the image', async () => {
    const image = join(allowed, 'ok.qcow2');
    execFileSync('qemu-img', ['create', '-q', '-f', 'qcow2', image, '64M']);
    const before = sha(image);
    expect(await check('qcow2', `qcow2/${image}`)).toEqual([true, 'success']);
    expect(sha(image)).toBe(before);
  });

  it('a second runner does not take the name (tcmu-runner coexistence): it serves without D-Bus', async () => {
    const lines: string[] = [];
    const { pino } = await import('pino');
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const second = await startTargetcliService({ log, subtypes: new Set(['file', 'other']), allowedDirs: [], busAddress: bus.address });
    expect(second.current).toBeUndefined();
    second.close();
    expect(await check('file', `file/${allowed}/disk.img`)).toEqual([true, 'success']);
    // The log names the owner and what it offers, and says two runners share a subtype.
    const parsed = lines.map((l) => JSON.parse(l) as { msg: string; reason?: string; subtypes?: string[] });
    const taken = parsed.find((l) => l.msg === 'no D-Bus service: serving without it');
    expect(taken?.reason).toMatch(new RegExp(`^org\\.kernel\\.TCMUService1 is owned by \\S+ \\(pid ${process.pid}\\), offering user:file, user:mine, user:qcow2, user:ram; tcmu-ts leaves it alone`));
    expect(parsed.find((l) => l.subtypes)?.subtypes).toEqual(['file']);
  });

  it('no bus at all: one log line, no service, no rejection', async () => {
    const lines: string[] = [];
    const { pino } = await import('pino');
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const none = await startTargetcliService({ log, subtypes: new Set(['file']), allowedDirs: [], busAddress: `unix:path=${root}/no-bus-here`, retryMs: 20 });
    expect(none.current).toBeUndefined();
    await new Promise((r) => setTimeout(r, 200)); // retries meanwhile, quietly (debug)
    none.close();
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['no D-Bus service: targetcli will not list tcmu-ts handlers; serving without it']);
  });

  it.skipIf(!haveTargetcli && !CI)("targetcli-fb's own code lists user:<subtype> backstores and prints our reason", async () => {
    // ui_backstore.UIBackstores._user_backstores is what `targetcli ls /backstores` runs;
    // Gio honours DBUS_SYSTEM_BUS_ADDRESS, so it talks to the private bus.
    const script = `
import json, sys
from targetcli.ui_backstore import UIBackstores
out = {}
for name, iface, props in UIBackstores._user_backstores(None):
    ok, reason = iface.CheckConfig('(s)', name + '/' + sys.argv[1 + (name != 'file')])
    out[name] = [props['org.kernel.TCMUService1']['ConfigDesc'][:14], ok, reason]
print(json.dumps(out))`;
    // Asynchronously: the service answers from this process's event loop.
    const { stdout } = await promisify(execFile)(SYSTEM_PYTHON, ['-c', script, `/${allowed}/disk.img`, `/${outside}/secret.img`], {
      env: { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: bus.address },
      encoding: 'utf8',
      timeout: 30_000,
    });
    const seen = JSON.parse(stdout);
    expect(Object.keys(seen).sort()).toEqual(['file', 'mine', 'qcow2', 'ram']);
    expect(seen.file).toEqual(['tcmu-ts file: ', true, 'success']);
    expect(seen.qcow2[1]).toBe(false);
    expect(seen.qcow2[2]).toContain('is not under any allowed directory');
  });
});

describe('no system bus on the machine', () => {
  it('no socket: one log line naming it, no service, no rejection', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    const saved = process.env.DBUS_SYSTEM_BUS_ADDRESS;
    delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
    try {
      const service = await startTargetcliService({ log, subtypes: new Set(['file']), allowedDirs: [], systemBusSocket: '/nonexistent/system_bus_socket', retryMs: 10_000 });
      expect(service.current).toBeUndefined();
      service.close();
    } finally {
      if (saved !== undefined) process.env.DBUS_SYSTEM_BUS_ADDRESS = saved;
    }
    const parsed = lines.map((l) => JSON.parse(l) as { msg: string; reason: string; level: number });
    expect(parsed.map((l) => [l.level, l.msg, l.reason])).toEqual([
      [30, 'no D-Bus service: targetcli will not list tcmu-ts handlers; serving without it', 'no system bus: /nonexistent/system_bus_socket does not exist'],
    ]);
  });
});

describe.skipIf(!haveBus)('the shipped D-Bus policy', () => {
  it('lets root own org.kernel.TCMUService1 on a bus with the system default policy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-dbus-policy-'));
    const policy = resolve(__dirname, '../../scripts/systemd/tcmu-ts-dbus.conf');
    // The system bus's default stance (system.conf): nobody owns names or
    // calls methods unless a policy file allows it. Then ours is included.
    const config = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN" "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${dir}/bus</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
  </policy>
  <include>${policy}</include>
</busconfig>`;
    writeFileSync(join(dir, 'bus.conf'), config);
    const bus = await startPrivateBus([`--config-file=${join(dir, 'bus.conf')}`]);
    try {
      const service = await startTargetcliService({ log: silentLogger, subtypes: new Set(['ram']), allowedDirs: [], busAddress: bus.address });
      expect(service.current).toBeDefined();
      try {
        await expectRamServed(bus.address);
      } finally {
        service?.close();
      }
    } finally {
      bus.stop();
    }
  });
});

describe.skipIf(!haveBus)('D-Bus reconnect', () => {
  it('the bus restarts: the daemon notices, serves on, and registers again once the bus is back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-dbus-restart-'));
    const address = `unix:path=${join(dir, 'bus')}`;
    const lines: string[] = [];
    const { pino } = await import('pino');
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    let bus = await startPrivateBus(['--session', `--address=${address}`]);
    const service = await startTargetcliService({ log, subtypes: new Set(['ram']), allowedDirs: [], busAddress: address, retryMs: 100 });
    try {
      expect(service.current).toBeDefined();
      bus.stop();
      await waitUntil(() => service.current === undefined, 'the lost connection noticed');
      expect(lines.map((l) => JSON.parse(l).msg)).toContain('D-Bus connection lost: targetcli no longer sees tcmu-ts until the bus is back; serving goes on');
      await new Promise((r) => setTimeout(r, 300)); // a few failed tries while the bus is down
      bus = await startPrivateBus(['--session', `--address=${address}`]);
      await waitUntil(() => service.current !== undefined, 're-registered on the new bus');
      await expectRamServed(address);
      // Registered twice, lost once; the failed tries in between logged nothing at info.
      const msgs = lines.map((l) => JSON.parse(l).msg as string);
      expect(msgs.filter((m) => m === 'D-Bus service registered')).toHaveLength(2);
      expect(msgs.filter((m) => m.startsWith('no D-Bus'))).toEqual([]);
    } finally {
      service.close();
      bus.stop();
    }
  });
});

describe.skipIf(!haveBus)('waiting for a system bus that does not exist yet', () => {
  it('tries nothing while the socket is missing (no timer: an idle daemon does not wake up for D-Bus), registers once it appears', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tcmu-dbus-appear-'));
    const socket = join(dir, 'run/dbus/system_bus_socket'); // two directories that do not exist yet
    const lines: string[] = [];
    const log = pino({ level: 'debug' }, { write: (l: string) => lines.push(l) });
    const tries = () => lines.filter((l) => JSON.parse(l).msg.startsWith('no D-Bus service')).length;
    const saved = process.env.DBUS_SYSTEM_BUS_ADDRESS;
    delete process.env.DBUS_SYSTEM_BUS_ADDRESS;
    let bus: PrivateBus | undefined;
    // A 20 ms retry pause: a timer would have tried dozens of times below.
    const service = await startTargetcliService({ log, subtypes: new Set(['ram']), allowedDirs: [], systemBusSocket: socket, retryMs: 20 });
    try {
      expect(service.current).toBeUndefined();
      await new Promise((r) => setTimeout(r, 300));
      mkdirSync(join(dir, 'run')); // one step at a time: the watch moves down
      await new Promise((r) => setTimeout(r, 300));
      mkdirSync(join(dir, 'run/dbus'));
      await new Promise((r) => setTimeout(r, 300));
      expect(tries(), 'attempts while the socket did not exist').toBe(1);
      // (dbus-daemon binds the socket a moment before it listens: a try in between falls back to the timer)
      bus = await startPrivateBus(['--session', `--address=unix:path=${socket}`]);
      await waitUntil(() => service.current !== undefined, 'registered once the socket appeared');
      await expectRamServed(bus.address);
    } finally {
      service.close();
      bus?.stop();
      if (saved !== undefined) process.env.DBUS_SYSTEM_BUS_ADDRESS = saved;
    }
  });
});

describe.skipIf(!haveBus)('a name another runner owns', () => {
  it('is never taken while owned; once that runner lets it go, tcmu-ts registers (asking again without queueing)', async () => {
    const bus = await startPrivateBus();
    const other = dbus.sessionBus({ busAddress: bus.address });
    const lines: string[] = [];
    const { pino } = await import('pino');
    const log = pino({ level: 'info' }, { write: (l: string) => lines.push(l) });
    let service: TargetcliService | undefined;
    try {
      expect(await other.requestName(BUS_NAME, dbus.NameFlag.DO_NOT_QUEUE)).toBe(dbus.RequestNameReply.PRIMARY_OWNER);
      service = await startTargetcliService({ log, subtypes: new Set(['ram']), allowedDirs: [], busAddress: bus.address, takenRetryMs: 100 });
      expect(service.current).toBeUndefined();
      await new Promise((r) => setTimeout(r, 400)); // several asks while the other owns it
      expect(service.current).toBeUndefined();
      other.disconnect(); // the other runner stops
      await waitUntil(() => service!.current !== undefined, 'registered once the name is free');
      const msgs = lines.map((l) => JSON.parse(l).msg as string);
      expect(msgs.filter((m) => m === 'no D-Bus service: serving without it')).toHaveLength(1); // the later asks are quiet
      expect(msgs.filter((m) => m === 'D-Bus service registered')).toHaveLength(1);
    } finally {
      service?.close();
      other.disconnect();
      bus.stop();
    }
  });
});

/** A client on the bus at `address` finds tcmu-ts's ram handler object and its CheckConfig answers. */
async function expectRamServed(address: string): Promise<void> {
  const client = dbus.sessionBus({ busAddress: address });
  try {
    const obj = await client.getProxyObject(BUS_NAME, `${ROOT_PATH}/ram`);
    expect(await obj.getInterface(HANDLER_INTERFACE).CheckConfig('ram/')).toEqual([true, 'success (the LUN size comes from the kernel at enable)']);
  } finally {
    client.disconnect();
  }
}

async function waitUntil(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
