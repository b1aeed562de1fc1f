/**
 * The TCM-USER generic netlink conversation (family "TCM-USER", version 2,
 * multicast group "config"). The kernel announces device add / remove /
 * reconfig; once we declare SUPP_KERN_CMD_REPLY it waits for our *_DONE
 * reply (status + device id) before finishing the configfs write.
 */
import { GenlSocket } from './genl-socket.js';
import { attrString, attrU32, attrU64, attrU8, parseAttrs, type NetlinkMessage } from './attrs.js';

export const TCMU_FAMILY = 'TCM-USER';
const TCMU_VERSION = 2;
const TCMU_GROUP = 'config';

export const enum TcmuNlCmd {
  AddedDevice = 1,
  RemovedDevice = 2,
  ReconfigDevice = 3,
  AddedDeviceDone = 4,
  RemovedDeviceDone = 5,
  ReconfigDeviceDone = 6,
  SetFeatures = 7,
}

const enum Attr {
  Device = 1,
  Minor = 2,
  DevCfg = 4,
  DevSize = 5,
  WriteCache = 6,
  CmdStatus = 7,
  DeviceId = 8,
  SuppKernCmdReply = 9,
}

export type TcmuEvent =
  | { kind: 'added'; uioName: string; minor: number; deviceId: number }
  | { kind: 'removed'; uioName: string; minor: number; deviceId: number }
  | {
      kind: 'reconfig';
      uioName: string;
      minor: number;
      deviceId: number;
      devConfig?: string;
      devSize?: number;
      writeCache?: boolean;
    };

const REPLY_FOR: Record<TcmuEvent['kind'], TcmuNlCmd> = {
  added: TcmuNlCmd.AddedDeviceDone,
  removed: TcmuNlCmd.RemovedDeviceDone,
  reconfig: TcmuNlCmd.ReconfigDeviceDone,
};

export function decodeTcmuEvent(msg: NetlinkMessage, familyId: number): TcmuEvent | undefined {
  if (msg.type !== familyId || msg.payload.length < 4) return undefined;
  const cmd = msg.payload.readUInt8(0);
  const attrs = parseAttrs(msg.payload.subarray(4));
  const uioName = attrString(attrs.get(Attr.Device));
  const minor = attrU32(attrs.get(Attr.Minor));
  const deviceId = attrU32(attrs.get(Attr.DeviceId));
  if (uioName === undefined || minor === undefined || deviceId === undefined) return undefined;
  switch (cmd) {
    case TcmuNlCmd.AddedDevice:
      return { kind: 'added', uioName, minor, deviceId };
    case TcmuNlCmd.RemovedDevice:
      return { kind: 'removed', uioName, minor, deviceId };
    case TcmuNlCmd.ReconfigDevice: {
      const size = attrU64(attrs.get(Attr.DevSize));
      const wc = attrU8(attrs.get(Attr.WriteCache));
      return {
        kind: 'reconfig',
        uioName,
        minor,
        deviceId,
        devConfig: attrString(attrs.get(Attr.DevCfg)),
        devSize: size === undefined ? undefined : Number(size),
        writeCache: wc === undefined ? undefined : wc !== 0,
      };
    }
    default:
      return undefined;
  }
}

export class TcmuNetlink {
  private socket?: GenlSocket;
  private familyId = 0;

  /**
   * Subscribe to device events. `onEvent` must eventually call `reply` for
   * every event it accepts; events for other runners' subtypes are replied
   * to by nobody (the owner answers).
   */
  async open(onEvent: (ev: TcmuEvent) => void, onError: (err: Error) => void): Promise<void> {
    const socket = new GenlSocket((msg) => {
      const ev = decodeTcmuEvent(msg, this.familyId);
      if (ev) onEvent(ev);
    }, onError);
    this.socket = socket;
    try {
      const family = await socket.resolveFamily(TCMU_FAMILY);
      const group = family.groups.get(TCMU_GROUP);
      if (group === undefined) throw new Error(`netlink family ${TCMU_FAMILY} has no "${TCMU_GROUP}" group`);
      this.familyId = family.id;
      socket.join(group);
    } catch (err) {
      this.close();
      throw err;
    }
  }

  /**
   * Tell the kernel we answer every event (module-wide). From now on
   * enable/rmdir/reconfig writes wait for our replies, so only call this
   * once the event handler is in place.
   */
  async enableReplies(): Promise<void> {
    await this.requireSocket().request(this.familyId, TcmuNlCmd.SetFeatures, TCMU_VERSION, [
      { type: Attr.SuppKernCmdReply, kind: 'u8', value: 1 },
    ]);
  }

  /** Answer an event: status 0 = success, a negative errno = refused. */
  async reply(ev: TcmuEvent, status: number): Promise<void> {
    await this.requireSocket().request(this.familyId, REPLY_FOR[ev.kind], TCMU_VERSION, [
      { type: Attr.CmdStatus, kind: 's32', value: status },
      { type: Attr.DeviceId, kind: 'u32', value: ev.deviceId },
    ]);
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private requireSocket(): GenlSocket {
    if (!this.socket) throw new Error('TCMU netlink not open');
    return this.socket;
  }
}
