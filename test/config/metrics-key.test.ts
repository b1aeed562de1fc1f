/** `[daemon] metrics`: the one config key of the metrics endpoint (kept apart from config.test.ts). */
import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/config.js';

describe('[daemon] metrics', () => {
  it('is off unless set, and parses HOST:PORT', () => {
    expect(parseConfig('').metrics).toBeUndefined();
    expect(parseConfig('[daemon]\nmetrics = "127.0.0.1:9470"\n').metrics).toEqual({ host: '127.0.0.1', port: 9470 });
    expect(parseConfig('[daemon]\nmetrics = "[::1]:9100"\n').metrics).toEqual({ host: '::1', port: 9100 });
  });

  it('names the key and the reason when refused', () => {
    expect(() => parseConfig('[daemon]\nmetrics = 9470\n', 'tcmu.toml')).toThrow('tcmu.toml: daemon.metrics: expected a string, got');
    expect(() => parseConfig('[daemon]\nmetrics = "localhost"\n', 'tcmu.toml')).toThrow(
      'tcmu.toml: daemon.metrics: "localhost" is not HOST:PORT (e.g. 127.0.0.1:9470 or [::1]:9470)',
    );
    expect(() => parseConfig('[daemon]\nmetrics = "127.0.0.1:99999"\n', 'tcmu.toml')).toThrow('daemon.metrics: "127.0.0.1:99999": port 99999 is not in 1-65535');
  });
});
