/**
 * The control command behind `tcmu-ts log-level`: one LUN's logger gets a
 * new level. pino children without a level of their own follow their
 * parent's, so the LUN's engine, disk and handler loggers change with it.
 */
import type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function setLunLogLevel(lun: { id: string; log: Logger }, level: unknown): { lun: string; level: string; was: string } {
  if (typeof level !== 'string' || !(LOG_LEVELS as readonly string[]).includes(level)) {
    throw Object.assign(new Error(`log level ${JSON.stringify(level)?.slice(0, 40)} is not one of ${LOG_LEVELS.join(', ')}`), { code: 'EINVAL' });
  }
  const was = lun.log.level;
  lun.log.info({ level, was }, 'log level changed'); // before: still visible when the new level hides info
  lun.log.level = level;
  return { lun: lun.id, level, was };
}
