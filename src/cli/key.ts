/**
 * `tcmu-ts key add NAME [--key-file F]`, `key remove NAME`, `key list`:
 * keys for crypt layers (`crypt/;key=NAME>...`) held in the running
 * daemon's memory only, never written to disk. A memory key wins over the
 * key_dir file of the same name; a daemon restart forgets it.
 *
 * The key is read from stdin (or --key-file), all bytes, no newline
 * stripping: exactly what cryptsetup's --key-file reads, so
 * `tcmu-ts key add k1 < /path/key` and `cryptsetup open --key-file /path/key`
 * agree. It is never taken from argv (other users see a command line in
 * /proc), and never printed.
 */
import type { Command } from 'commander';
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '../daemon/control.js';
import { MAX_SOCKET_KEY_BYTES } from '../daemon/key-control.js';

/** Read every byte of `fd` up to `limit`; throws (without content) past it. */
export function readKeyBytes(fd: number, what: string, limit = MAX_SOCKET_KEY_BYTES): Buffer {
  const buf = Buffer.alloc(limit + 1);
  let n = 0;
  try {
    for (;;) {
      let got: number;
      try {
        got = readSync(fd, buf, n, buf.length - n, null);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') continue; // a non-blocking pipe: wait for the writer
        if ((err as NodeJS.ErrnoException).code === 'EOF') break;
        throw err;
      }
      if (got === 0) break;
      n += got;
      if (n > limit) throw Object.assign(new Error(`${what} holds more than ${limit} bytes; the daemon takes keys up to ${limit} bytes over the control socket`), { code: 'E2BIG' });
    }
    if (n === 0) throw Object.assign(new Error(`${what} is empty: nothing to use as the key`), { code: 'EINVAL' });
    return Buffer.from(buf.subarray(0, n));
  } finally {
    buf.fill(0);
  }
}

function readKey(keyFile: string | undefined): Buffer {
  if (keyFile !== undefined) {
    const fd = openSync(keyFile, 'r');
    try {
      if (!fstatSync(fd).isFile()) throw Object.assign(new Error(`--key-file ${keyFile} is not a regular file`), { code: 'EINVAL' });
      return readKeyBytes(fd, `key file ${keyFile}`);
    } finally {
      closeSync(fd);
    }
  }
  if (process.stdin.isTTY) {
    throw Object.assign(new Error('tcmu-ts key add reads the key from stdin (a pipe or a file: `tcmu-ts key add NAME < keyfile`) or --key-file, not from a terminal'), { code: 'EINVAL' });
  }
  return readKeyBytes(0, 'stdin');
}

export function registerKey(program: Command): void {
  const key = program.command('key').description('keys for crypt layers held in the running daemon\'s memory (never on disk)');
  key
    .command('add <name>')
    .description('give the daemon key NAME, read from stdin (all bytes, as cryptsetup --key-file) or --key-file; it wins over key_dir/NAME')
    .option('--key-file <path>', 'read the key from this file instead of stdin')
    .option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET)
    .action(async (name: string, o: { keyFile?: string; socket: string }) => {
      const bytes = readKey(o.keyFile);
      const encoded = bytes.toString('base64');
      bytes.fill(0);
      const answer = (await controlRequest(o.socket, { cmd: 'key', op: 'add', name, key: encoded })) as { name: string; replaced: boolean; opened: number };
      const opened = answer.opened > 0 ? `; ${answer.opened} LUN(s) that were waiting opened` : '';
      console.log(`key ${answer.name} ${answer.replaced ? 'replaced' : 'added'} (memory only; a daemon restart forgets it)${opened}`);
    });
  key
    .command('remove <name>')
    .description('forget (and wipe) the memory key NAME; LUNs already open keep working')
    .option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET)
    .action(async (name: string, o: { socket: string }) => {
      const answer = (await controlRequest(o.socket, { cmd: 'key', op: 'remove', name })) as { name: string; removed: boolean };
      if (!answer.removed) {
        console.error(`no memory key named ${answer.name}`);
        process.exitCode = 1;
        return;
      }
      console.log(`key ${answer.name} removed`);
    });
  key
    .command('list')
    .description('names of the memory keys (never their bytes; key_dir files are not listed)')
    .option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET)
    .action(async (o: { socket: string }) => {
      const answer = (await controlRequest(o.socket, { cmd: 'key', op: 'list' })) as { names: string[] };
      for (const n of answer.names) console.log(n);
    });
}
