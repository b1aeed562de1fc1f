/**
 * One pino logger for the process. JSON to stdout by default (what log
 * shippers want); LUN code gets child loggers carrying `lun`, so every line
 * about a LUN can be filtered without string matching.
 */
import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export function createLogger(level: LevelWithSilent = 'info', destination?: DestinationStream): Logger {
  return pino({ level, base: { pid: process.pid } }, destination ?? pino.destination({ fd: 1, sync: false }));
}

/** A logger that drops everything (library use and tests). */
export const silentLogger: Logger = pino({ level: 'silent' });
