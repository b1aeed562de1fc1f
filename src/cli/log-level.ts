/**
 * `tcmu-ts log-level <lun> <level>`: change one served LUN's log level at
 * run time through the control socket (its ring engine, SCSI emulation and
 * handler log through the LUN's logger, so all of them follow). The daemon's
 * own level and other LUNs are untouched; a daemon restart forgets it.
 */
import type { Command } from 'commander';
import { controlRequest, DEFAULT_CONTROL_SOCKET } from '../daemon/control.js';
import { LOG_LEVELS } from '../daemon/lun-log-level.js';

export function registerLogLevel(program: Command): void {
  program
    .command('log-level <lun> <level>')
    .description(`set a served LUN's log level (${LOG_LEVELS.join(', ')}) in the running daemon`)
    .option('--socket <path>', 'daemon control socket', DEFAULT_CONTROL_SOCKET)
    .action(async (lun: string, level: string, o: { socket: string }) => {
      const answer = (await controlRequest(o.socket, { cmd: 'log-level', lun, level })) as { lun: string; level: string; was: string };
      console.log(`${answer.lun}: log level ${answer.was} -> ${answer.level}`);
    });
}
