import type { Command } from 'commander';
import type { LevelWithSilent, Logger } from 'pino';
import { createLogger } from '../log.js';
import { builtinHandlerNames, registerUserHandler } from '../backstore/registry.js';
import { ConfigError, DEFAULT_CONFIG, loadConfig, type DaemonConfig } from '../config/config.js';
import { readChapKey } from '../config/chap-keys.js';
import { checkLioAvailable } from '../lio/export.js';
import { parseListenAddress, type ListenAddress } from '../daemon/metrics-address.js';
import { openLogFile } from '../daemon/log-file.js';
import { defaultSubtypes, describeRunners, findOtherRunners } from '../daemon/coexist.js';

/**
 * Read every CHAP key the config names before anything starts, so a missing
 * or world-readable key stops the daemon with the LUN's key in the message
 * (and never the secret) instead of surfacing later as a skipped export.
 */
function checkChapKeys(config: DaemonConfig, file: string): void {
  for (const lun of config.luns) {
    if (lun.chap === undefined) continue;
    try {
      readChapKey(config.keyDir, lun.chap);
    } catch (err) {
      throw ConfigError.at(file, `lun.${lun.name}.chap`, (err as Error).message);
    }
  }
}

/** Every handler, minus the subtypes another running runner has loaded (see coexist.ts). */
function defaultServed(ours: string[], log: Logger): string[] {
  const { serve, left } = defaultSubtypes(ours, findOtherRunners());
  for (const [subtype, runner] of left) {
    log.warn(
      { subtype, runner: describeRunners([runner]) },
      `user:${subtype} left to the other runner, which has that handler loaded; pass serve --subtypes to serve it here instead (and stop it there)`,
    );
  }
  return serve;
}

function parseMetricsOption(text: string): ListenAddress {
  try {
    return parseListenAddress(text);
  } catch (err) {
    throw new Error(`--metrics: ${(err as Error).message}`);
  }
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve every TCMU device whose subtype tcmu-ts handles; SIGTERM stops cleanly; SIGHUP reloads the config file, reopens the log file and rescans')
    .option('-c, --config <file>', 'TOML config file (LUNs to create, allowed dirs, user handlers)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (overrides the config)')
    .option('--subtypes <list>', 'comma-separated subtypes to answer for (default: every known handler)')
    .option('--socket <path>', 'control socket path (overrides the config)')
    .option('--no-netlink', 'do not listen for device events (rescan with SIGHUP instead)')
    .option('--no-dbus', 'do not offer the handlers to targetcli on the system bus (org.kernel.TCMUService1)')
    .option('--metrics <host:port>', 'serve Prometheus metrics at http://HOST:PORT/metrics (overrides [daemon] metrics)')
    .option('--log-file <path>', 'log to this file (created 0600) instead of stdout; SIGHUP reopens it (logrotate)')
    .action(async (opts: { config?: string; logLevel?: string; subtypes?: string; socket?: string; netlink: boolean; dbus: boolean; metrics?: string; logFile?: string }) => {
      const metrics = opts.metrics !== undefined ? parseMetricsOption(opts.metrics) : undefined;
      // What runs: the file's values under the command line's overrides (reloads compare the same way).
      const effective = (c: DaemonConfig): DaemonConfig => ({
        ...c,
        logLevel: (opts.logLevel as DaemonConfig['logLevel'] | undefined) ?? c.logLevel,
        controlSocket: opts.socket ?? c.controlSocket,
        metrics: metrics ?? c.metrics,
      });
      const readConfig = (file: string): DaemonConfig => {
        const c = loadConfig(file);
        checkChapKeys(c, file);
        return effective(c);
      };
      const config = opts.config ? readConfig(opts.config) : effective(DEFAULT_CONFIG);
      if (opts.socket === '') throw new Error('--socket cannot be empty: the control socket is also the single-instance guard');
      const logFile = opts.logFile !== undefined ? openLogFile(opts.logFile) : undefined;
      const log = createLogger(config.logLevel as LevelWithSilent, logFile?.stream);
      if (logFile) process.on('SIGHUP', () => logFile.reopen());
      await checkLioAvailable();
      for (const [name, mod] of Object.entries(config.handlers)) registerUserHandler(name, mod);
      const subtypes = new Set(opts.subtypes ? opts.subtypes.split(',').map((s) => s.trim()) : defaultServed([...builtinHandlerNames(), ...Object.keys(config.handlers)], log));
      // The daemon's code is loaded by the command that runs it, not by every command.
      const { serveForever } = await import('../daemon/serve.js');
      await serveForever({
        log,
        subtypes,
        netlink: opts.netlink,
        dbus: opts.dbus,
        metrics: config.metrics,
        controlSocket: config.controlSocket,
        keyDir: config.keyDir,
        allowedDirs: config.allowedDirs,
        luns: config.luns,
        reload: opts.config ? { config, load: () => readConfig(opts.config!) } : undefined,
      });
      log.flush();
    });
}
