/** Shared test helpers: an OpenContext with a silent logger. */
import { pino } from 'pino';
import type { OpenContext } from '../../src/backstore/types.js';

export const silentLog = pino({ level: 'silent' });

export function openContext(overrides: Partial<OpenContext> = {}): OpenContext {
  return { size: undefined, blockSize: 512, readOnly: false, log: silentLog, options: {}, ...overrides };
}
