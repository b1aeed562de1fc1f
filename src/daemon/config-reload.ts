/**
 * Live config reload (SIGHUP): read the config file again and make the
 * running daemon match it where that is safe to do live.
 *   - a LUN new in the file is created and exported (as at start);
 *   - a LUN gone from the file is unexported and its device removed (the
 *     kernel tells the daemon, which closes it; the image file is kept);
 *   - `log_level` is applied;
 *   - anything else that changed (a LUN's settings, the control socket,
 *     key_dir, allowed_dirs, handlers, metrics) is refused with the reason,
 *     and keeps its running value until a restart.
 * A file that does not load (syntax, an invalid key, a missing CHAP key)
 * changes nothing: the error is logged with the key and the reason. Reloads
 * run one at a time; signals during a reload fold into one more reload.
 */
import type { Logger } from 'pino';
import type { DaemonConfig, LunConfig } from '../config/config.js';
import { deleteTcmuDevice } from '../lio/export.js';
import { provisionLuns } from './provision.js';

export interface ReloadPlan {
  add: LunConfig[];
  remove: string[];
  logLevel?: DaemonConfig['logLevel'];
  /** Changes not applied live, each with its reason. */
  refused: string[];
}

/** Stable comparison of config values (key order of option tables does not matter). */
function same(a: unknown, b: unknown): boolean {
  const canonical = (v: unknown): unknown =>
    v !== null && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.keys(v as object).sort().map((k) => [k, canonical((v as Record<string, unknown>)[k])]))
      : Array.isArray(v)
        ? v.map(canonical)
        : v;
  return JSON.stringify(canonical(a)) === JSON.stringify(canonical(b));
}

const RESTART_ONLY: { key: keyof DaemonConfig; name: string }[] = [
  { key: 'controlSocket', name: 'daemon.control_socket' },
  { key: 'keyDir', name: 'daemon.key_dir' },
  { key: 'allowedDirs', name: 'daemon.allowed_dirs' },
  { key: 'handlers', name: 'daemon.handlers' },
  { key: 'metrics', name: 'daemon.metrics' },
];

export function planReload(current: DaemonConfig, next: DaemonConfig): ReloadPlan {
  const plan: ReloadPlan = { add: [], remove: [], refused: [] };
  const before = new Map(current.luns.map((l) => [l.name, l]));
  const after = new Map(next.luns.map((l) => [l.name, l]));
  for (const [name, lun] of after) {
    const old = before.get(name);
    if (!old) plan.add.push(lun);
    else if (!same(old, lun)) {
      plan.refused.push(`lun.${name}: its settings changed; a served LUN is not rebuilt live (remove it from the file, reload, add it back, reload)`);
    }
  }
  for (const name of before.keys()) if (!after.has(name)) plan.remove.push(name);
  if (next.logLevel !== current.logLevel) plan.logLevel = next.logLevel;
  for (const { key, name } of RESTART_ONLY) {
    if (!same(current[key], next[key])) plan.refused.push(`${name}: changed; takes effect when the daemon restarts`);
  }
  return plan;
}

export interface ReloadActions {
  provision(luns: readonly LunConfig[], log: Logger, keyDir: string): Promise<void>;
  remove(name: string): Promise<void>;
}

const kernelActions: ReloadActions = {
  provision: provisionLuns,
  remove: (name) => deleteTcmuDevice(name),
};

export class ConfigReloader {
  private running?: Promise<void>;
  private again = false;

  constructor(
    /** The config as the daemon applied it (updated by every reload). */
    private current: DaemonConfig,
    /** Reads and validates the file (throws ConfigError naming the key). */
    private readonly load: () => DaemonConfig,
    private readonly log: Logger,
    private readonly actions: ReloadActions = kernelActions,
  ) {}

  /** Resolves when this reload (and any it was folded with) is done; never rejects. */
  reload(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        await this.once();
      } while (this.again);
      this.running = undefined;
    })();
    return this.running;
  }

  private async once(): Promise<void> {
    let next: DaemonConfig;
    try {
      next = this.load();
    } catch (err) {
      this.log.error({ reason: (err as Error).message }, 'config reload refused: the file does not load; nothing changed');
      return;
    }
    const plan = planReload(this.current, next);
    for (const reason of plan.refused) this.log.warn({ reason }, 'config reload: change not applied');
    if (plan.logLevel) {
      this.log.info({ from: this.current.logLevel, to: plan.logLevel }, 'config reload: log level');
      this.log.level = plan.logLevel;
    }
    for (const name of plan.remove) {
      try {
        await this.actions.remove(name);
        this.log.info({ lun: name }, 'config reload: LUN removed (its image is kept)');
      } catch (err) {
        this.log.error({ lun: name, err }, 'config reload: cannot remove LUN');
      }
    }
    // Created with the running key_dir: a changed one is refused above.
    if (plan.add.length > 0) await this.actions.provision(plan.add, this.log, this.current.keyDir);
    // What runs now: the new LUN list and level, the old values of everything refused.
    const refusedLuns = new Set(plan.refused.filter((r) => r.startsWith('lun.')).map((r) => r.slice(4, r.indexOf(':'))));
    this.current = {
      ...this.current,
      logLevel: next.logLevel,
      luns: next.luns.map((l) => (refusedLuns.has(l.name) ? this.current.luns.find((o) => o.name === l.name)! : l)),
    };
    this.log.info({ added: plan.add.map((l) => l.name), removed: plan.remove, refused: plan.refused.length }, 'config reloaded');
  }
}
