/**
 * The daemon's side of ALUA for one LUN. It reads the device's target port
 * groups from configfs for INQUIRY and REPORT TARGET PORT GROUPS, and, for
 * a medium with an exclusive lock (an RBD image behind several gateways),
 * keeps the local group's access state in step with the lock:
 * active/optimized while this gateway holds it, active/non-optimized while
 * another one does. Initiators that rank paths by ALUA state (Linux
 * multipath, `prio alua`) then send I/O where it needs no lock hand-over;
 * when that gateway fails, I/O moves to another path, the first write there
 * takes the lock, and the states follow.
 *
 * The state is only ever moved between the two active states, and only in
 * a group whose access type allows implicit transitions: standby,
 * unavailable and offline are an admin's decisions, and a group of type
 * "None" is an admin's active/active layout.
 *
 * When it looks: at every INQUIRY and REPORT TARGET PORT GROUPS (what an
 * initiator sends after the ASYMMETRIC ACCESS STATE CHANGED the kernel
 * raises on each change), once when the LUN starts, and about once a second
 * while the LUN completes commands (the first write through a new path takes
 * the lock). An idle LUN never polls.
 */
import type { Logger } from 'pino';
import type { LockHolder } from '../backstore/types.js';
import { type AluaConfig, MAX_GROUPS, MAX_PORTS_PER_GROUP, readAluaConfig, setAluaState } from '../lio/alua-configfs.js';
import { AluaState, type TargetPortGroups } from '../scsi/alua.js';

/** STATUS CODE of a group after a change the target made itself. */
const ALTERED_BY_IMPLICIT_ALUA = 2;

export interface AluaFollowerOptions {
  /** configfs directory of the device (…/core/user_N/<dev>). */
  deviceDir: string;
  /** configfs target root (…/target); default the real one. */
  targetRoot?: string;
  /** The store's exclusive-lock holder now; undefined when the medium has no such lock. */
  lockHolder: () => Promise<LockHolder> | undefined;
  /** How long INQUIRY / REPORT TARGET PORT GROUPS wait for the lock before answering from configfs alone (default 500 ms). */
  answerWithinMs?: number;
  log: Logger;
}

const ANSWER_WITHIN_MS = 500;

export class AluaFollower {
  private syncing: Promise<AluaConfig> | undefined;
  private warned = { ambiguous: false, truncated: false };

  constructor(private readonly opts: AluaFollowerOptions) {}

  /**
   * The groups as INQUIRY / REPORT TARGET PORT GROUPS report them (a
   * TargetPortGroupSource). Asking who holds the lock is a cluster round
   * trip; a cluster that does not answer (an OSD down, up to the handler's
   * osd_op_timeout) must not hold these commands, so after answerWithinMs
   * they get configfs as it is, and the look goes on: a state it changes
   * reaches the initiator as LIO's ASYMMETRIC ACCESS STATE CHANGED.
   */
  readonly read = async (): Promise<TargetPortGroups> => {
    const pass = this.sync();
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, this.opts.answerWithinMs ?? ANSWER_WITHIN_MS, undefined)));
    try {
      const done = await Promise.race([pass, late]);
      if (done !== undefined) return done;
    } finally {
      clearTimeout(timer);
    }
    pass.catch(() => {}); // still running; a failure after this answer is the next command's business
    return readAluaConfig(this.opts.deviceDir, this.opts.targetRoot);
  };

  /** Commands completed recently: look again unless a look is under way. */
  onActivity(): void {
    if (this.syncing !== undefined) return;
    this.sync().catch((err: unknown) => this.opts.log.debug({ err }, 'ALUA: cannot read the port groups'));
  }

  /** Read the groups and bring the local group's state in step with the lock; concurrent calls share one pass. */
  sync(): Promise<AluaConfig> {
    this.syncing ??= this.pass().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async pass(): Promise<AluaConfig> {
    const { deviceDir, targetRoot, log } = this.opts;
    const config = await readAluaConfig(deviceDir, targetRoot);
    this.warnOnce(config);
    const group = config.localGroup;
    if (group === undefined) return config;
    if (group.accessType !== 'implicit' && group.accessType !== 'implicit and explicit') return config;
    if (group.state !== AluaState.ActiveOptimized && group.state !== AluaState.ActiveNonOptimized) return config;
    let holder: LockHolder | undefined;
    try {
      holder = await this.opts.lockHolder();
    } catch (err) {
      log.debug({ err }, 'ALUA: cannot learn who holds the exclusive lock; the port group state stays');
      return config;
    }
    const want = holder === 'this' ? AluaState.ActiveOptimized : holder === 'other' ? AluaState.ActiveNonOptimized : undefined;
    if (want === undefined || want === group.state) return config;
    try {
      await setAluaState(deviceDir, group.name, want);
    } catch (err) {
      log.warn({ err, group: group.name }, 'ALUA: cannot set the local port group state');
      return config;
    }
    log.info({ group: group.name, groupId: group.id, from: group.state, to: want, lockHolder: holder }, 'ALUA: the local port group follows the exclusive lock');
    group.state = want;
    group.status = ALTERED_BY_IMPLICIT_ALUA;
    return config;
  }

  private warnOnce(config: AluaConfig): void {
    if (config.ambiguous && !this.warned.ambiguous) {
      this.warned.ambiguous = true;
      this.opts.log.warn(
        { groups: config.groups.map((g) => g.name), local: config.localGroup?.name },
        'ALUA: enabled ports in more than one port group; TCMU does not say which port a command came through, so the first is reported as local',
      );
    }
    if (config.truncated && !this.warned.truncated) {
      this.warned.truncated = true;
      this.opts.log.warn({ maxGroups: MAX_GROUPS, maxPortsPerGroup: MAX_PORTS_PER_GROUP }, 'ALUA: more port groups or ports than can be reported; the rest are left out');
    }
  }
}
