import type { Command } from 'commander';
import type { LevelWithSilent } from 'pino';
import { createLogger } from '../log.js';
import { serveForever } from '../daemon/serve.js';
import { builtinHandlerNames, registerUserHandler } from '../backstore/registry.js';
import { ConfigError, DEFAULT_CONFIG, loadConfig, type DaemonConfig } from '../config/config.js';
import { readChapKey } from '../config/chap-keys.js';
import { checkLioAvailable } from '../lio/export.js';

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

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve every TCMU device whose subtype tcmu-ts handles; SIGTERM stops cleanly, SIGHUP rescans')
    .option('-c, --config <file>', 'TOML config file (LUNs to create, allowed dirs, user handlers)')
    .option('--log-level <level>', 'fatal|error|warn|info|debug|trace (overrides the config)')
    .option('--subtypes <list>', 'comma-separated subtypes to answer for (default: every known handler)')
    .option('--socket <path>', 'control socket path (overrides the config)')
    .option('--no-netlink', 'do not listen for device events (rescan with SIGHUP instead)')
    .action(async (opts: { config?: string; logLevel?: string; subtypes?: string; socket?: string; netlink: boolean }) => {
      const config = opts.config ? loadConfig(opts.config) : DEFAULT_CONFIG;
      if (opts.config) checkChapKeys(config, opts.config);
      if (opts.socket === '') throw new Error('--socket cannot be empty: the control socket is also the single-instance guard');
      const log = createLogger((opts.logLevel ?? config.logLevel) as LevelWithSilent);
      await checkLioAvailable();
      for (const [name, mod] of Object.entries(config.handlers)) registerUserHandler(name, mod);
      const subtypes = new Set(
        opts.subtypes ? opts.subtypes.split(',').map((s) => s.trim()) : [...builtinHandlerNames(), ...Object.keys(config.handlers)],
      );
      await serveForever({
        log,
        subtypes,
        netlink: opts.netlink,
        controlSocket: opts.socket ?? config.controlSocket,
        keyDir: config.keyDir,
        allowedDirs: config.allowedDirs,
        luns: config.luns,
      });
      log.flush();
    });
}
