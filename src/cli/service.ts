/**
 * `tcmu-ts service install`: put the systemd unit and the D-Bus policy in
 * place (the files shipped in scripts/systemd/), with ExecStart pointing at
 * this very installation (node + dist/src/cli/main.js), and an empty config
 * file if there is none yet. It does not start anything: the admin runs
 * `systemctl daemon-reload && systemctl enable --now tcmu-ts`.
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { dirname, isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';

export interface InstallOptions {
  /** Prefix every target path with this directory (packaging, tests); default '/'. */
  root?: string;
  /** The daemon's config file, as the unit passes it (default /etc/tcmu-ts/tcmu-ts.toml). */
  config?: string;
  /** Program and script ExecStart runs; default this node and this tcmu-ts. */
  exec?: readonly string[];
}

export interface Installed {
  unit: string;
  dbusPolicy: string;
  /** The config file, when this run created it. */
  createdConfig?: string;
}

const UNIT_PATH = '/etc/systemd/system/tcmu-ts.service';
const DBUS_POLICY_PATH = '/etc/dbus-1/system.d/tcmu-ts.conf';
const DEFAULT_CONFIG_PATH = '/etc/tcmu-ts/tcmu-ts.toml';
/** What ExecStart may contain unquoted: systemd splits on spaces and expands % and $. */
const SAFE_PATH = /^\/[A-Za-z0-9/._+@-]*$/;

function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const parent = dirname(dir);
    if (parent === dir) throw new Error('tcmu-ts: cannot find its package directory');
    dir = parent;
  }
  return dir;
}

function shipped(name: string): string {
  return readFileSync(join(packageRoot(), 'scripts', 'systemd', name), 'utf8');
}

function defaultExec(): string[] {
  const script = process.argv[1];
  if (!script) throw new Error('cannot tell where tcmu-ts is installed (no script path); pass the program explicitly');
  return [process.execPath, realpathSync(script)];
}

/** The shipped unit with ExecStart = `exec... serve --config <config>`. */
export function renderUnit(exec: readonly string[], config: string): string {
  for (const part of [...exec, config]) {
    if (!SAFE_PATH.test(part)) {
      throw new Error(`${JSON.stringify(part)}: ExecStart paths must be absolute and use only letters, digits and / . _ + @ - (systemd would split or expand anything else)`);
    }
  }
  const unit = shipped('tcmu-ts.service');
  const lines = unit.split('\n');
  const at = lines.findIndex((l) => l.startsWith('ExecStart='));
  if (at < 0) throw new Error('the shipped tcmu-ts.service has no ExecStart line');
  lines[at] = `ExecStart=${[...exec, 'serve', '--config', config].join(' ')}`;
  return lines.join('\n');
}

const CONFIG_TEMPLATE = `# tcmu-ts daemon configuration (see docs/ADMIN.md). Empty: serve every
# TCMU device of a known subtype that targetcli or configfs creates.
#
# [daemon]
# allowed_dirs = ["/var/lib/tcmu-ts"]   # images may only be opened beneath these
# metrics = "127.0.0.1:9470"            # Prometheus text at /metrics
`;

function write(path: string, text: string, mode: number): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  writeFileSync(path, text, { mode });
  chmodSync(path, mode); // an existing file keeps its old mode otherwise
}

export function installService(opts: InstallOptions = {}): Installed {
  const root = opts.root ?? '/';
  if (!isAbsolute(root)) throw new Error(`--root ${JSON.stringify(root)} is not an absolute path`);
  const config = opts.config ?? DEFAULT_CONFIG_PATH;
  if (!isAbsolute(config)) throw new Error(`--config ${JSON.stringify(config)} is not an absolute path`);
  const at = (path: string) => join(root, path);
  const unit = renderUnit(opts.exec ?? defaultExec(), config);
  write(at(UNIT_PATH), unit, 0o644);
  write(at(DBUS_POLICY_PATH), shipped('tcmu-ts-dbus.conf'), 0o644);
  const installed: Installed = { unit: at(UNIT_PATH), dbusPolicy: at(DBUS_POLICY_PATH) };
  if (!existsSync(at(config))) {
    mkdirSync(dirname(at(config)), { recursive: true, mode: 0o700 });
    writeFileSync(at(config), CONFIG_TEMPLATE, { mode: 0o600, flag: 'wx' });
    installed.createdConfig = at(config);
  }
  return installed;
}

export function registerService(program: Command): void {
  const service = program.command('service').description('run tcmu-ts under systemd');
  service
    .command('install')
    .description(`write ${UNIT_PATH} and ${DBUS_POLICY_PATH} (and an empty config if missing); starts nothing`)
    .option('--root <dir>', 'install beneath this directory instead of / (packaging)')
    .option('--config <file>', `config file the unit passes to serve (default ${DEFAULT_CONFIG_PATH})`)
    .action((opts: { root?: string; config?: string }) => {
      const done = installService({ root: opts.root, config: opts.config });
      const out = [`installed ${done.unit}`, `installed ${done.dbusPolicy}`];
      if (done.createdConfig) out.push(`created ${done.createdConfig} (empty: edit it to add LUNs, allowed_dirs, metrics)`);
      out.push('next: systemctl daemon-reload && systemctl enable --now tcmu-ts');
      process.stdout.write(`${out.join('\n')}\n`);
    });
}
