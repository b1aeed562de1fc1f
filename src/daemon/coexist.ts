/**
 * Living next to another TCMU runner (Debian's tcmu-runner 1.5.4, measured
 * in the VM; see docs/ADMIN.md "Next to tcmu-runner"):
 *  - the kernel multicasts every ADDED / REMOVED / RECONFIG to every runner
 *    and takes the FIRST *_DONE reply for a device; later replies get
 *    ENODEV ("completion could not find device");
 *  - tcmu-runner answers every event, also for subtypes it has no handler
 *    for: ADDED with ENOENT, RECONFIG with ENODEV, REMOVED with 0; it is
 *    usually first, so a device tcmu-ts serves is refused unless it was made
 *    with nl_reply_supported=-1 (then the kernel waits for nobody);
 *  - tcmu-ts answers only for its own subtypes; a device nobody serves keeps
 *    its `enable` write waiting (uninterruptibly) until some runner answers.
 * This file finds the other runners (by process name, which needs no bus)
 * and words the log lines that say what that means for a device.
 */
import { closeSync, openSync, readdirSync, readFileSync, readSync } from 'node:fs';
import { join } from 'node:path';

export interface OtherRunner {
  pid: number;
  name: string;
}

/** Process names of runners known to answer TCMU netlink events. */
const RUNNER_NAMES: ReadonlySet<string> = new Set(['tcmu-runner']);
/** /proc holds at most pid_max (4M) entries; never look at more. */
const MAX_PROC_ENTRIES = 1 << 22;

/** Other TCMU runners running now (empty when /proc cannot be read). */
export function findOtherRunners(procRoot = '/proc', selfPid = process.pid): OtherRunner[] {
  let entries: string[];
  try {
    entries = readdirSync(procRoot);
  } catch {
    return [];
  }
  const found: OtherRunner[] = [];
  const n = Math.min(entries.length, MAX_PROC_ENTRIES);
  for (let i = 0; i < n; i++) {
    const entry = entries[i]!;
    if (!/^\d{1,10}$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === selfPid) continue;
    let comm: string;
    try {
      comm = readFileSync(join(procRoot, entry, 'comm'), 'latin1').slice(0, 64).trim();
    } catch {
      continue; // gone meanwhile
    }
    if (RUNNER_NAMES.has(comm)) found.push({ pid, name: comm });
  }
  return found;
}

/** /proc/PID/maps of a runner with a few handlers is a few KiB; never read more than this. */
const MAX_MAPS_BYTES = 1 << 20;

/**
 * Subtypes another runner serves, from the handler modules it has loaded:
 * tcmu-runner dlopens `handler_<subtype>.so` at start, so its memory map
 * names them without asking the bus (which may be absent).
 */
export function subtypesOfRunner(pid: number, procRoot = '/proc'): string[] {
  let maps: string;
  try {
    const fd = openSync(join(procRoot, String(pid), 'maps'), 'r');
    try {
      const buf = Buffer.alloc(MAX_MAPS_BYTES);
      let len = 0;
      for (let n; len < buf.length && (n = readSync(fd, buf, len, buf.length - len, null)) > 0; ) len += n;
      maps = buf.subarray(0, len).toString('latin1');
    } finally {
      closeSync(fd);
    }
  } catch {
    return [];
  }
  const found = new Set<string>();
  for (const m of maps.matchAll(/\/handler_([A-Za-z0-9_]{1,64})\.so\b/g)) found.add(m[1]!);
  return [...found].sort();
}

/**
 * The subtypes tcmu-ts serves by default: every handler it has, minus those
 * another running runner has loaded. Two runners answering for one subtype
 * would both open the same uio devices and serve one ring twice; the admin
 * who wants that subtype in tcmu-ts says so with `serve --subtypes`.
 */
export function defaultSubtypes(ours: readonly string[], others: readonly OtherRunner[], procRoot = '/proc'): { serve: string[]; left: Map<string, OtherRunner> } {
  const left = new Map<string, OtherRunner>();
  for (const runner of others) for (const t of subtypesOfRunner(runner.pid, procRoot)) if (ours.includes(t) && !left.has(t)) left.set(t, runner);
  return { serve: ours.filter((t) => !left.has(t)), left };
}

export function describeRunners(runners: readonly OtherRunner[]): string {
  return runners.map((r) => `${r.name} (pid ${r.pid})`).join(', ');
}

/** The uio device's name (`tcm-user/<hba>/<dev>/<config>`), undefined once it is gone. */
export function readUioName(uio: string, root = '/sys/class/uio'): string | undefined {
  try {
    return readFileSync(join(root, uio, 'name'), 'latin1').slice(0, 4096).trim();
  } catch {
    return undefined;
  }
}

/**
 * How an admin fails an `enable` that waits for a runner that never answers
 * (the kernel resets pending netlink commands only while they are blocked).
 */
const PARAMS = '/sys/module/target_core_user/parameters';
export const RESET_NETLINK = `echo 1 > ${PARAMS}/block_netlink; echo 1 > ${PARAMS}/reset_netlink; echo 0 > ${PARAMS}/block_netlink`;

export const COEXIST_ADVICE =
  'create the devices tcmu-ts serves with nl_reply_supported=-1 (tcmu-ts does so for its config LUNs while another runner runs; ' +
  '`tcmu-ts lun create --no-netlink-reply`), see docs/ADMIN.md "Next to tcmu-runner"';
