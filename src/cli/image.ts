/**
 * `tcmu-ts image create|info|check` and `tcmu-ts snapshot create|list|revert|delete`.
 * Image commands work on files. Snapshot commands take either an image path
 * (offline) or the name of a LUN the daemon serves: then the daemon
 * quiesces the LUN around the operation (see src/daemon/lun.ts).
 */
import type { Command } from 'commander';
import { isAbsolute } from 'node:path';
import { parseSize } from '../config/size.js';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '../daemon/control.js';

/** The qcow2 library is loaded on demand so `serve` does not pay for it. */
const qcow2 = () => import('../../handlers/qcow2/api.js');

const print = (value: unknown, json?: boolean) =>
  console.log(json || typeof value !== 'object' ? JSON.stringify(value, null, 2) : formatObject(value as object));

function formatObject(o: object): string {
  return Object.entries(o)
    .map(([k, v]) => `${k}: ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`)
    .join('\n');
}

export function registerImage(program: Command): void {
  const image = program.command('image').description('create and inspect qcow2 images');
  image
    .command('create <path>')
    .description('create a qcow2 image (an overlay with --backing)')
    .requiredOption('--size <size>', 'virtual size, e.g. 10G (overlays may take the base size: pass it anyway)')
    .option('--cluster-size <size>', 'cluster size, 512 B to 2 MiB', '64k')
    .option('--backing <path>', 'backing (base) image')
    .option('--backing-format <fmt>', 'qcow2 or raw', 'qcow2')
    .option('--compat <version>', '2 or 3', '3')
    .action(async (path: string, o) => {
      const { createImage } = await qcow2();
      await createImage(path, {
        size: parseSize(o.size, '--size'),
        clusterSize: parseSize(o.clusterSize, '--cluster-size'),
        backing: o.backing,
        backingFormat: o.backing ? o.backingFormat : undefined,
        version: Number(o.compat) as 2 | 3,
      });
      console.log(`created ${path}`);
    });
  image
    .command('info <path>')
    .option('--json', 'machine-readable output')
    .action(async (path: string, o: { json?: boolean }) => {
      const { imageInfo } = await qcow2();
      print(await imageInfo(path), o.json);
    });
  image
    .command('check <path>')
    .description('check metadata consistency; exit 2 on corruption, 3 on leaks only')
    .option('--repair-leaks', 'free leaked clusters (never touches corruptions)')
    .option('--json', 'machine-readable output')
    .action(async (path: string, o: { repairLeaks?: boolean; json?: boolean }) => {
      const { checkImage } = await qcow2();
      const result = await checkImage(path, o.repairLeaks ? { repair: 'leaks' } : undefined);
      print(result, o.json);
      if (result.corruptions > 0) process.exitCode = 2;
      else if (result.leaks > 0 && !o.repairLeaks) process.exitCode = 3;
    });
}

/** A target is an image path (offline) or a LUN name the daemon serves. */
async function onTarget(
  target: string,
  socket: string,
  op: 'create' | 'list' | 'revert' | 'delete',
  name?: string,
): Promise<unknown> {
  if (isAbsolute(target)) {
    const api = await qcow2();
    switch (op) {
      case 'create':
        return api.snapshotCreate(target, name!);
      case 'list':
        return api.snapshotList(target);
      case 'revert':
        return api.snapshotRevert(target, name!);
      case 'delete':
        return api.snapshotDelete(target, name!);
    }
  }
  return controlRequest(socket, { cmd: 'snapshot', lun: target, op, name }, 120_000);
}

export function registerSnapshot(program: Command): void {
  const snap = program
    .command('snapshot')
    .description('internal qcow2 snapshots of an image path or of a served LUN (by name)');
  const socketOpt = ['--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET] as const;
  snap
    .command('create <target> <name>')
    .option(...socketOpt)
    .action(async (target: string, name: string, o: { socket: string }) => {
      await onTarget(target, o.socket, 'create', name);
      console.log(`snapshot ${name} created`);
    });
  snap
    .command('list <target>')
    .option(...socketOpt)
    .option('--json', 'machine-readable output')
    .action(async (target: string, o: { socket: string; json?: boolean }) => {
      const list = (await onTarget(target, o.socket, 'list')) as Array<Record<string, unknown>>;
      if (o.json) return console.log(JSON.stringify(list, null, 2));
      for (const s of list) console.log(`${String(s.id ?? '').padEnd(6)} ${String(s.name).padEnd(24)} ${s.date ?? ''}`);
    });
  snap
    .command('revert <target> <name>')
    .option(...socketOpt)
    .action(async (target: string, name: string, o: { socket: string }) => {
      await onTarget(target, o.socket, 'revert', name);
      console.log(`reverted to ${name}`);
    });
  snap
    .command('delete <target> <name>')
    .option(...socketOpt)
    .action(async (target: string, name: string, o: { socket: string }) => {
      await onTarget(target, o.socket, 'delete', name);
      console.log(`snapshot ${name} deleted`);
    });
}
