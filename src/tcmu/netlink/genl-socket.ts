/**
 * A generic netlink socket driven from the event loop: requests that wait
 * for the kernel's ACK (matched by sequence number), family and multicast
 * group resolution through nlctrl, and a callback for unsolicited
 * (multicast) messages. The fd work is in the addon; this is policy.
 */
import { native } from '../../native.js';
import {
  NLMSG_ERROR,
  NLM_F_ACK,
  NLM_F_REQUEST,
  attrString,
  attrU16,
  attrU32,
  encodeGenlMessage,
  parseAttrs,
  splitMessages,
  type AttrValue,
  type NetlinkMessage,
} from './attrs.js';

const GENL_ID_CTRL = 0x10;
const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_ID = 1;
const CTRL_ATTR_FAMILY_NAME = 2;
const CTRL_ATTR_MCAST_GROUPS = 7;
const CTRL_ATTR_MCAST_GRP_NAME = 1;
const CTRL_ATTR_MCAST_GRP_ID = 2;

export interface GenlFamily {
  id: number;
  groups: Map<string, number>;
}

interface Pending {
  resolve: (replies: NetlinkMessage[]) => void;
  reject: (err: Error) => void;
  replies: NetlinkMessage[];
}

export class GenlSocket {
  private readonly fd: number;
  private seq = Math.floor(Date.now() / 1000) & 0xffff;
  private readonly pending = new Map<number, Pending>();
  private closed = false;

  constructor(private readonly onEvent: (msg: NetlinkMessage) => void, onError: (err: Error) => void) {
    const n = native();
    this.fd = n.netlinkOpen();
    n.netlinkWatch(this.fd, (datagram) => this.receive(datagram), onError);
  }

  /** Send a request and wait for the kernel's ACK (or its error, as an Error with errno). */
  request(family: number, cmd: number, version: number, attrs: AttrValue[]): Promise<NetlinkMessage[]> {
    if (this.closed) return Promise.reject(new Error('netlink socket closed'));
    const seq = (this.seq = (this.seq + 1) >>> 0);
    const msg = encodeGenlMessage({ family, flags: NLM_F_REQUEST | NLM_F_ACK, seq, cmd, version, attrs });
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject, replies: [] });
      try {
        native().netlinkSend(this.fd, msg);
      } catch (err) {
        this.pending.delete(seq);
        reject(err as Error);
      }
    });
  }

  async resolveFamily(name: string): Promise<GenlFamily> {
    let replies: NetlinkMessage[];
    try {
      replies = await this.request(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1, [
        { type: CTRL_ATTR_FAMILY_NAME, kind: 'string', value: name },
      ]);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') {
        throw Object.assign(new Error(`generic netlink family "${name}" not found: is the kernel module loaded?`), {
          code: 'ENOENT',
        });
      }
      throw err;
    }
    const reply = replies.find((m) => m.type === GENL_ID_CTRL);
    if (!reply) throw new Error(`nlctrl gave no answer for family "${name}"`);
    const attrs = parseAttrs(reply.payload.subarray(4));
    const id = attrU16(attrs.get(CTRL_ATTR_FAMILY_ID));
    if (id === undefined) throw new Error(`nlctrl answer for "${name}" has no family id`);
    const groups = new Map<string, number>();
    const nested = attrs.get(CTRL_ATTR_MCAST_GROUPS);
    if (nested) {
      for (const group of parseAttrs(nested).values()) {
        const g = parseAttrs(group);
        const gname = attrString(g.get(CTRL_ATTR_MCAST_GRP_NAME));
        const gid = attrU32(g.get(CTRL_ATTR_MCAST_GRP_ID));
        if (gname !== undefined && gid !== undefined) groups.set(gname, gid);
      }
    }
    return { id, groups };
  }

  join(groupId: number): void {
    native().netlinkJoin(this.fd, groupId);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    native().netlinkClose(this.fd);
    for (const p of this.pending.values()) p.reject(new Error('netlink socket closed'));
    this.pending.clear();
  }

  private receive(datagram: Buffer): void {
    for (const msg of splitMessages(datagram)) {
      const waiting = msg.seq !== 0 ? this.pending.get(msg.seq) : undefined;
      if (!waiting) {
        this.onEvent(msg);
        continue;
      }
      if (msg.type === NLMSG_ERROR) {
        // nlmsgerr: s32 error (0 = ACK), then the original header.
        const errno = -msg.payload.readInt32LE(0);
        this.pending.delete(msg.seq);
        if (errno === 0) waiting.resolve(waiting.replies);
        else waiting.reject(errnoError(errno));
      } else {
        waiting.replies.push(msg);
      }
    }
  }
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM',
  2: 'ENOENT',
  13: 'EACCES',
  16: 'EBUSY',
  19: 'ENODEV',
  22: 'EINVAL',
  95: 'EOPNOTSUPP',
};

function errnoError(errno: number): Error {
  const code = ERRNO_NAMES[errno] ?? `E${errno}`;
  return Object.assign(new Error(`netlink request failed: ${code} (errno ${errno})`), { code, errno });
}
