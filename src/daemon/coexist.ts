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
import { readdirSync, readFileSync } from 'node:fs';
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
