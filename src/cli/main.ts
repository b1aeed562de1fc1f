#!/usr/bin/env node
/**
 * The tcmu-ts command line. Each subcommand lives in its own module; this
 * file only wires them into commander. The control-operation commands
 * (`image ...`, `snapshot ...`) come from the handlers themselves, so the
 * handlers are loaded only when the command line may need them: `serve`
 * and `lun` start without paying for every handler's code.
 */
import './threadpool.js'; // must run before anything touches libuv's pool
import { Command } from 'commander';
import { offeredOperations } from '../backstore/control-registry.js';
import { knownHandlers } from '../backstore/registry.js';
import { registerControlCommands } from './control-commands.js';
import { registerHandlers } from './handlers.js';
import { registerServe } from './serve.js';
import { registerLun } from './lun.js';
import { registerService } from './service.js';
import { registerLogLevel } from './log-level.js';
import { registerKey } from './key.js';

const program = new Command();
program
  .name('tcmu-ts')
  .description('Userspace SCSI backstore runner for the Linux LIO target (TCMU)')
  .version('0.1.0');

registerServe(program);
registerLun(program);
registerHandlers(program, async () => ({ handlers: await knownHandlers(), offers: await offeredOperations() }));
registerService(program);
registerLogLevel(program);
registerKey(program);

async function main(): Promise<void> {
  // The first word that is not an option names the command.
  const first = process.argv.slice(2).find((arg) => !arg.startsWith('-'));
  const builtin = program.commands.some((c) => c.name() === first || c.aliases().includes(first ?? ''));
  if (!builtin) registerControlCommands(program, await offeredOperations());
  await program.parseAsync(process.argv);
}

main().catch((err: unknown) => {
  process.stderr.write(`tcmu-ts: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
