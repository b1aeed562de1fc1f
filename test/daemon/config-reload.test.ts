/**
 * SIGHUP config reload: what a changed file does to the running daemon
 * (planReload), and the reloader applying it through injected kernel
 * actions (creating and removing configfs devices is the kernel tests' job).
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { parseConfig, type DaemonConfig, type LunConfig } from '../../src/config/config.js';
import { ConfigReloader, planReload } from '../../src/daemon/config-reload.js';

const base = `[daemon]
allowed_dirs = ["/srv"]

[lun.a]
backstore = "ram"
size = "64M"

[lun.b]
backstore = "file"
path = "/srv/b.img"
size = "1G"
options = { create = 1 }
`;

function recorder() {
  const calls: string[] = [];
  const lines: { level: number; msg: string; reason?: string }[] = [];
  const log = pino({ level: 'info' }, { write: (l: string) => lines.push(JSON.parse(l)) });
  return {
    calls,
    lines,
    log,
    actions: {
      provision: async (luns: readonly LunConfig[], _log: unknown, keyDir: string) => {
        calls.push(`provision ${luns.map((l) => l.name).join(',')} keys=${keyDir}`);
      },
      remove: async (name: string) => {
        calls.push(`remove ${name}`);
      },
    },
  };
}

describe('config reload plan', () => {
  it('adds new LUNs, removes dropped ones, applies log_level, refuses the rest with reasons', () => {
    const next = parseConfig(`[daemon]
log_level = "debug"
allowed_dirs = ["/srv", "/data"]
metrics = "127.0.0.1:9470"

[lun.a]
backstore = "ram"
size = "128M"

[lun.c]
backstore = "ram"
size = "1G"
`);
    const plan = planReload(parseConfig(base), next);
    expect(plan.add.map((l) => l.name)).toEqual(['c']);
    expect(plan.remove).toEqual(['b']);
    expect(plan.logLevel).toBe('debug');
    expect(plan.refused).toEqual([
      'lun.a: its settings changed; a served LUN is not rebuilt live (remove it from the file, reload, add it back, reload)',
      'daemon.allowed_dirs: changed; takes effect when the daemon restarts',
      'daemon.metrics: changed; takes effect when the daemon restarts',
    ]);
  });

  it('an unchanged file (options in another order) plans nothing', () => {
    const same = base.replace('options = { create = 1 }', 'options = { "create" = 1 }');
    expect(planReload(parseConfig(base), parseConfig(same))).toEqual({ add: [], remove: [], refused: [] });
  });
});

describe('ConfigReloader', () => {
  it('applies a valid file, and a broken file changes nothing and says why', async () => {
    const r = recorder();
    let text = base;
    const reloader = new ConfigReloader(parseConfig(base), () => parseConfig(text, '/etc/tcmu-ts/tcmu-ts.toml'), r.log, r.actions);

    text = base + '\n[lun.c]\nbackstore = "ram"\nsize = "1G"\n';
    await reloader.reload();
    expect(r.calls).toEqual(['provision c keys=/etc/tcmu-ts/keys']);

    text = '[daemon]\nlog_level = "loud"\n';
    await reloader.reload();
    expect(r.calls).toHaveLength(1);
    const refusal = r.lines.find((l) => l.msg === 'config reload refused: the file does not load; nothing changed');
    expect(refusal?.reason).toContain('/etc/tcmu-ts/tcmu-ts.toml: daemon.log_level:');

    // c was applied: dropping a and c now removes both, and the level changes.
    text = base.replace('[lun.a]\nbackstore = "ram"\nsize = "64M"\n', '').replace('[daemon]', '[daemon]\nlog_level = "warn"');
    await reloader.reload();
    expect(r.calls.slice(1)).toEqual(['remove a', 'remove c']);
    expect(r.log.level).toBe('warn');
  });

  it('folds signals that arrive during a reload into one more reload', async () => {
    const r = recorder();
    let loads = 0;
    const config: DaemonConfig = parseConfig(base);
    const reloader = new ConfigReloader(config, () => (loads++, config), r.log, r.actions);
    await Promise.all([reloader.reload(), reloader.reload(), reloader.reload(), reloader.reload()]);
    expect(loads).toBe(2);
  });
});
