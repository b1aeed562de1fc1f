import { describe, expect, it } from 'vitest';
import { encodeGenlMessage, parseAttrs, splitMessages, attrString, attrU32, attrU64 } from '../../../src/tcmu/netlink/attrs.js';
import { decodeTcmuEvent } from '../../../src/tcmu/netlink/tcmu-events.js';

describe('generic netlink encoding', () => {
  it('round-trips a message with padded attributes', () => {
    const msg = encodeGenlMessage({
      family: 0x1d,
      flags: 5,
      seq: 42,
      cmd: 3,
      version: 2,
      attrs: [
        { type: 1, kind: 'string', value: 'tcm-user/1/lun0/file//a' },
        { type: 2, kind: 'u32', value: 7 },
        { type: 5, kind: 'u64', value: 1n << 40n },
        { type: 7, kind: 's32', value: -22 },
        { type: 9, kind: 'u8', value: 1 },
      ],
    });
    expect(msg.length % 4).toBe(0);
    expect(msg.readUInt32LE(0)).toBe(msg.length);
    const [m] = splitMessages(msg);
    expect(m).toMatchObject({ type: 0x1d, flags: 5, seq: 42 });
    expect(m!.payload[0]).toBe(3);
    expect(m!.payload[1]).toBe(2);
    const attrs = parseAttrs(m!.payload.subarray(4));
    expect(attrString(attrs.get(1))).toBe('tcm-user/1/lun0/file//a');
    expect(attrU32(attrs.get(2))).toBe(7);
    expect(attrU64(attrs.get(5))).toBe(1n << 40n);
    expect(attrs.get(7)!.readInt32LE(0)).toBe(-22);
    expect(attrs.get(9)![0]).toBe(1);
  });

  it('decodes kernel TCMU events and ignores other families', () => {
    const ev = (cmd: number, extra: Parameters<typeof encodeGenlMessage>[0]['attrs'] = []) =>
      splitMessages(
        encodeGenlMessage({
          family: 0x20,
          flags: 0,
          seq: 0,
          cmd,
          version: 2,
          attrs: [
            { type: 1, kind: 'string', value: 'tcm-user/1/d/file//x' },
            { type: 2, kind: 'u32', value: 3 },
            { type: 8, kind: 'u32', value: 11 },
            ...extra,
          ],
        }),
      )[0]!;
    expect(decodeTcmuEvent(ev(1), 0x20)).toEqual({ kind: 'added', uioName: 'tcm-user/1/d/file//x', minor: 3, deviceId: 11 });
    expect(decodeTcmuEvent(ev(2), 0x20)).toMatchObject({ kind: 'removed', minor: 3 });
    expect(decodeTcmuEvent(ev(3, [{ type: 5, kind: 'u64', value: 4096n }]), 0x20)).toMatchObject({
      kind: 'reconfig',
      devSize: 4096,
    });
    expect(decodeTcmuEvent(ev(3, [{ type: 4, kind: 'string', value: 'file//y' }]), 0x20)).toMatchObject({ devConfig: 'file//y' });
    expect(decodeTcmuEvent(ev(3, [{ type: 6, kind: 'u8', value: 0 }]), 0x20)).toMatchObject({ writeCache: false });
    expect(decodeTcmuEvent(ev(1), 0x21)).toBeUndefined();
  });

  it('rejects a truncated datagram', () => {
    const msg = encodeGenlMessage({ family: 1, flags: 0, seq: 1, cmd: 1, version: 1, attrs: [] });
    expect(() => splitMessages(Buffer.concat([msg, Buffer.from([64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])]))).toThrow(
      /malformed/,
    );
  });
});
