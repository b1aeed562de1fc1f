/**
 * `tcmu-ts image ...` / `tcmu-ts snapshot ...` built from the handlers'
 * control declarations: the commands, their output (the same lines as
 * before the commands were generated) and exit codes, offline on a real
 * image and online through a real control socket.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { offeredOperations } from '../../src/backstore/control-registry.js';
import { knownHandlers } from '../../src/backstore/registry.js';
import { printResult, registerControlCommands } from '../../src/cli/control-commands.js';
import { formatHandlers, handlersAsJson } from '../../src/cli/handlers.js';
import { startControlServer } from '../../src/daemon/control.js';

const dir = mkdtempSync(join(tmpdir(), 'tcmu-cli-control-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
afterEach(() => {
  process.exitCode = undefined;
  vi.restoreAllMocks();
});

/** Run one command line; returns what it printed. */
async function cli(...argv: string[]): Promise<string> {
  const program = new Command().exitOverride();
  registerControlCommands(program, await offeredOperations());
  const lines: string[] = [];
  vi.spyOn(console, 'log').mockImplementation((line: unknown) => void lines.push(String(line)));
  await program.parseAsync(['node', 'tcmu-ts', ...argv]);
  vi.restoreAllMocks();
  return lines.join('\n');
}

describe('control commands', () => {
  const image = join(dir, 'a.qcow2');

  it('image create / info / check print what they always printed', async () => {
    expect(await cli('image', 'create', image, '--size', '16M', '--cluster-size', '4k')).toBe(`created ${image}`);
    const info = await cli('image', 'info', image);
    expect(info.split('\n').slice(0, 4)).toEqual(['format: qcow2', 'version: 3', `virtualSize: ${16 << 20}`, 'clusterSize: 4096']);
    expect(info).toMatch(/\nsnapshots: \[\]$/);
    expect(JSON.parse(await cli('image', 'info', image, '--json'))).toMatchObject({ format: 'qcow2', clusterSize: 4096 });
    expect(await cli('image', 'check', image)).toBe(
      ['corruptions: 0', 'leaks: 0', 'corruptionsFixed: 0', 'leaksFixed: 0', 'copiedFlagErrors: 0', 'allocatedClusters: 4', 'messages: []'].join('\n'),
    );
    expect(process.exitCode ?? 0).toBe(0);
  });

  it('an operation\'s exit code becomes the process exit code (image check: 2 corrupt, 3 leaks)', () => {
    vi.spyOn(console, 'log').mockImplementation(() => undefined);
    printResult({ value: { leaks: 1 }, exitCode: 3 });
    expect(process.exitCode).toBe(3);
  });

  it('snapshot commands on an image path', async () => {
    expect(await cli('snapshot', 'list', image)).toBe('');
    expect(await cli('snapshot', 'create', image, 'before')).toBe('snapshot before created');
    expect(await cli('snapshot', 'list', image)).toMatch(/^1 {6}before {19}\d{4}-\d\d-\d\dT[\d:.]+Z$/);
    expect(JSON.parse(await cli('snapshot', 'list', image, '--json'))).toMatchObject([{ id: '1', name: 'before' }]);
    expect(await cli('snapshot', 'revert', image, 'before')).toBe('reverted to before');
    expect(await cli('snapshot', 'delete', image, 'before')).toBe('snapshot before deleted');
  });

  it('refuses a handler that does not offer the operation, and options it does not take', async () => {
    await expect(cli('image', 'info', image, '--format', 'ram')).rejects.toThrow(/handler "ram" offers no image info on an image path \(offered by: qcow2\)/);
    await expect(cli('image', 'create', join(dir, 'b.qcow2'), '--size', '1M', '--compat', '4')).rejects.toThrow(/--compat: "4" is not one of 2, 3/);
    await expect(cli('image', 'create', join(dir, 'b.qcow2'))).rejects.toThrow(/required option '--size <size>' not specified/);
  });

  it('a LUN name goes to the daemon as a control request; its text is printed', async () => {
    const socket = join(dir, 'control.sock');
    const requests: unknown[] = [];
    const server = await startControlServer(socket, async (req) => {
      requests.push(req);
      return { value: [], text: 'from the daemon' };
    });
    try {
      expect(await cli('snapshot', 'create', 'web', 'snap1', '--socket', socket)).toBe('from the daemon');
      expect(await cli('snapshot', 'list', 'user_3/web', '--socket', socket, '--json')).toBe('[]');
    } finally {
      server.close();
    }
    expect(requests).toEqual([
      { cmd: 'control', lun: 'web', op: 'snapshot.create', args: { name: 'snap1' } },
      { cmd: 'control', lun: 'user_3/web', op: 'snapshot.list', args: {} },
    ]);
  });

  it('tcmu-ts handlers lists each handler with the operations it offers', async () => {
    const handlers = await knownHandlers();
    const offers = await offeredOperations();
    const text = formatHandlers(handlers, offers);
    expect(text).toMatch(/^qcow2 +qcow2 v2\/v3 images/m);
    expect(text).toMatch(/^ {2}snapshot create +create an internal snapshot \[offline, online\]$/m);
    expect(text).toMatch(/--size <size> +virtual size.*\(required\)$/m);
    const json = handlersAsJson(handlers, offers) as Array<{ name: string; operations: Array<{ name: string }> }>;
    expect(json.find((h) => h.name === 'qcow2')!.operations.map((o) => o.name)).toContain('image.check');
    expect(json.find((h) => h.name === 'ram')!.operations).toEqual([]);
  });
});
