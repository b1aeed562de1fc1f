#!/usr/bin/env node
/**
 * The tcmu-ts command line. Each subcommand lives in its own module; this
 * file only wires them into commander.
 */
import './threadpool.js'; // must run before anything touches libuv's pool
import { Command } from 'commander';
import { registerServe } from './serve.js';
import { registerLun } from './lun.js';
import { registerImage, registerSnapshot } from './image.js';
import { registerService } from './service.js';
import { registerLogLevel } from './log-level.js';

const program = new Command();
program
  .name('tcmu-ts')
  .description('Userspace SCSI backstore runner for the Linux LIO target (TCMU)')
  .version('0.1.0');

registerServe(program);
registerLun(program);
registerImage(program);
registerSnapshot(program);
registerService(program);
registerLogLevel(program);

program.parseAsync(process.argv).catch((err: unknown) => {
  process.stderr.write(`tcmu-ts: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
