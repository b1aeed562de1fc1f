/**
 * Netlink message and attribute encoding (RFC 3549 layout): a 16-byte
 * nlmsghdr, for generic netlink a 4-byte genlmsghdr, then TLV attributes
 * padded to 4 bytes. Only what the TCMU conversation needs.
 */
export const NLMSG_HDRLEN = 16;
export const GENL_HDRLEN = 4;
export const NLA_HDRLEN = 4;

export const NLM_F_REQUEST = 0x1;
export const NLM_F_ACK = 0x4;
export const NLMSG_ERROR = 0x2;
export const NLMSG_DONE = 0x3;

const align4 = (n: number) => (n + 3) & ~3;

export type AttrValue =
  | { type: number; kind: 'u8'; value: number }
  | { type: number; kind: 'u16'; value: number }
  | { type: number; kind: 'u32'; value: number }
  | { type: number; kind: 's32'; value: number }
  | { type: number; kind: 'u64'; value: bigint }
  | { type: number; kind: 'string'; value: string };

function attrPayload(a: AttrValue): Buffer {
  switch (a.kind) {
    case 'u8':
      return Buffer.from([a.value & 0xff]);
    case 'u16': {
      const b = Buffer.alloc(2);
      b.writeUInt16LE(a.value);
      return b;
    }
    case 'u32': {
      const b = Buffer.alloc(4);
      b.writeUInt32LE(a.value >>> 0);
      return b;
    }
    case 's32': {
      const b = Buffer.alloc(4);
      b.writeInt32LE(a.value | 0);
      return b;
    }
    case 'u64': {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(a.value);
      return b;
    }
    case 'string':
      return Buffer.from(`${a.value}\0`, 'utf8');
  }
}

/** Build one generic netlink message. */
export function encodeGenlMessage(opts: {
  family: number;
  flags: number;
  seq: number;
  cmd: number;
  version: number;
  attrs: AttrValue[];
}): Buffer {
  const payloads = opts.attrs.map((a) => ({ type: a.type, data: attrPayload(a) }));
  const attrBytes = payloads.reduce((n, p) => n + align4(NLA_HDRLEN + p.data.length), 0);
  const total = NLMSG_HDRLEN + GENL_HDRLEN + attrBytes;
  const buf = Buffer.alloc(total);
  buf.writeUInt32LE(total, 0);
  buf.writeUInt16LE(opts.family, 4);
  buf.writeUInt16LE(opts.flags, 6);
  buf.writeUInt32LE(opts.seq >>> 0, 8);
  buf.writeUInt32LE(0, 12); // port id: the kernel fills ours in
  buf.writeUInt8(opts.cmd, 16);
  buf.writeUInt8(opts.version, 17);
  let off = NLMSG_HDRLEN + GENL_HDRLEN;
  for (const p of payloads) {
    buf.writeUInt16LE(NLA_HDRLEN + p.data.length, off);
    buf.writeUInt16LE(p.type, off + 2);
    p.data.copy(buf, off + NLA_HDRLEN);
    off += align4(NLA_HDRLEN + p.data.length);
  }
  return buf;
}

export interface NetlinkMessage {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  /** Bytes after the nlmsghdr. */
  payload: Buffer;
}

/** Split one datagram into its messages; truncated tails are dropped with an error. */
export function splitMessages(datagram: Buffer): NetlinkMessage[] {
  const out: NetlinkMessage[] = [];
  let off = 0;
  while (off + NLMSG_HDRLEN <= datagram.length) {
    const len = datagram.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || off + len > datagram.length) {
      throw new Error(`netlink: malformed message length ${len} at offset ${off}`);
    }
    out.push({
      type: datagram.readUInt16LE(off + 4),
      flags: datagram.readUInt16LE(off + 6),
      seq: datagram.readUInt32LE(off + 8),
      pid: datagram.readUInt32LE(off + 12),
      payload: datagram.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return out;
}

/** TLV attributes of a buffer, by type (the last one wins for duplicates). */
export function parseAttrs(buf: Buffer): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  let off = 0;
  while (off + NLA_HDRLEN <= buf.length) {
    const len = buf.readUInt16LE(off);
    const type = buf.readUInt16LE(off + 2) & 0x3fff; // drop NLA_F_NESTED / NET_BYTEORDER
    if (len < NLA_HDRLEN || off + len > buf.length) break;
    attrs.set(type, buf.subarray(off + NLA_HDRLEN, off + len));
    off += align4(len);
  }
  return attrs;
}

export const attrString = (b: Buffer | undefined): string | undefined =>
  b === undefined ? undefined : b.toString('utf8').replace(/\0+$/, '');
export const attrU32 = (b: Buffer | undefined): number | undefined => (b && b.length >= 4 ? b.readUInt32LE(0) : undefined);
export const attrU16 = (b: Buffer | undefined): number | undefined => (b && b.length >= 2 ? b.readUInt16LE(0) : undefined);
export const attrU8 = (b: Buffer | undefined): number | undefined => (b && b.length >= 1 ? b.readUInt8(0) : undefined);
export const attrU64 = (b: Buffer | undefined): bigint | undefined => (b && b.length >= 8 ? b.readBigUInt64LE(0) : undefined);
