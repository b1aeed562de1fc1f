import { describe, expect, it } from 'vitest';
import { be, command, dataIn, fieldPointer, freshDisk, run, sense } from './harness.js';

const GOOD = 0x00;
const CHECK = 0x02;
const rsoc = (byte2: number, opcode: number, sa: number, alloc: number) => [0xa3, 0x0c, byte2, opcode, ...be(sa, 2), ...be(alloc, 4), 0, 0];

async function ask(c: number[], opts = {}) {
  const { disk } = await freshDisk(opts);
  const cmd = command(c, { inLength: 4096 });
  const status = await run(disk, cmd);
  return { status, cmd, data: Buffer.from(dataIn(cmd)) };
}

describe('REPORT SUPPORTED OPERATION CODES', () => {
  it('all commands: one 8-byte descriptor per command, thin-only ones hidden on thick LUNs', async () => {
    const { status, data } = await ask(rsoc(0, 0, 0, 4096));
    expect(status).toBe(GOOD);
    const n = (data.length - 4) / 8;
    expect(data.readUInt32BE(0)).toBe(data.length - 4);
    const entries = Array.from({ length: n }, (_, i) => data.subarray(4 + 8 * i, 12 + 8 * i));
    const ops = entries.map((e) => (e[5] & 1 ? `${e[0].toString(16)}/${e.readUInt16BE(2).toString(16)}` : e[0].toString(16)));
    expect(ops).toContain('28');
    expect(ops).toContain('9e/10');
    expect(ops).toContain('a3/c');
    expect(ops).not.toContain('42');
    expect(ops).not.toContain('9e/12');
    const read10 = entries.find((e) => e[0] === 0x28)!;
    expect([read10[5], read10.readUInt16BE(6)]).toEqual([0, 10]);
    const rc16 = entries.find((e) => e[0] === 0x9e)!;
    expect([rc16[5], rc16.readUInt16BE(6)]).toEqual([1, 16]);
  });

  it('all commands on a thin LUN include UNMAP and GET LBA STATUS', async () => {
    const { data } = await ask(rsoc(0, 0, 0, 4096), { thin: true });
    const opcodes = [];
    for (let at = 4; at < data.length; at += 8) opcodes.push((data[at] << 8) | data[at + 3]);
    expect(opcodes).toContain(0x4200);
    expect(opcodes).toContain(0x9e12);
  });

  it('RCTD adds a 12-byte timeouts descriptor to each entry', async () => {
    const { data } = await ask(rsoc(0x80, 0, 0, 4096));
    expect((data.length - 4) % 20).toBe(0);
    expect(data[4 + 5] & 0x02).toBe(0x02); // CTDP
    expect(data.readUInt16BE(4 + 8)).toBe(10);
  });

  // [name, CDB, expected one-command reply]
  it.each([
    ['READ(10), option 1', rsoc(1, 0x28, 0, 64), [0, 0x03, 0, 10, 0x28, 0x18, 0xff, 0xff, 0xff, 0xff, 0x3f, 0xff, 0xff, 0x00]],
    ['INQUIRY, option 3', rsoc(3, 0x12, 0, 64), [0, 0x03, 0, 6, 0x12, 0x01, 0xff, 0xff, 0xff, 0x00]],
    ['READ CAPACITY(16), option 2', rsoc(2, 0x9e, 0x10, 64), [0, 0x03, 0, 16, 0x9e, 0x10, ...Array(12).fill(0xff), 0x01, 0x00]],
    ['WRITE SAME(16), option 1', rsoc(1, 0x93, 0, 64), [0, 0x03, 0, 16, 0x93, 0x09, ...Array(12).fill(0xff), 0x3f, 0x00]],
    ['unsupported FORMAT UNIT', rsoc(1, 0x04, 0, 64), [0, 0x01, 0, 0]],
    ['unsupported service action', rsoc(2, 0x9e, 0x11, 64), [0, 0x01, 0, 0]],
    ['UNMAP on a thick LUN', rsoc(1, 0x42, 0, 64), [0, 0x01, 0, 0]],
  ])('one command: %s', async (_n, c, expected) => {
    const { status, data } = await ask(c);
    expect(status).toBe(GOOD);
    expect([...data]).toEqual(expected);
  });

  it('one command with RCTD appends the timeouts descriptor', async () => {
    const { data } = await ask(rsoc(0x81, 0x00, 0, 64));
    expect([...data]).toEqual([0, 0x83, 0, 6, 0, 0, 0, 0, 0, 0, 0, 10, ...Array(10).fill(0)]);
  });

  it('short allocation length truncates', async () => {
    const { data, cmd } = await ask(rsoc(0, 0, 0, 10));
    expect(data.length).toBe(10);
    expect(cmd.dataInLength).toBe(10);
  });

  it.each([
    ['option 1 for an opcode with service actions', rsoc(1, 0x9e, 0x10, 64)],
    ['option 2 for an opcode without service actions', rsoc(2, 0x28, 0, 64)],
    ['reserved reporting option 4', rsoc(4, 0x28, 0, 64)],
  ])('%s -> 05/24/00 at byte 2', async (_n, c) => {
    const { status, cmd } = await ask(c);
    expect(status).toBe(CHECK);
    expect(sense(cmd)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
    expect(fieldPointer(cmd)).toMatchObject({ cd: true, byte: 2 });
  });

  it('every reported usage mask agrees with what the decoder accepts', async () => {
    const { disk } = await freshDisk({ thin: true });
    const all = command(rsoc(0, 0, 0, 4096), { inLength: 4096 });
    await run(disk, all);
    const d = dataIn(all);
    for (let at = 4; at < d.length; at += 8) {
      const hasSa = (d[at + 5] & 1) !== 0;
      const one = command(rsoc(hasSa ? 2 : 1, d[at], d.readUInt16BE(at + 2), 64), { inLength: 64 });
      expect(await run(disk, one)).toBe(GOOD);
      const reply = dataIn(one);
      const usage = reply.subarray(4, 4 + reply.readUInt16BE(2));
      expect(usage.length).toBe(d.readUInt16BE(at + 6));
      // A CDB with every bit outside the mask set in byte i must be rejected at byte i.
      for (let i = 1; i < usage.length; i++) {
        const forbidden = ~usage[i] & 0xff;
        if (forbidden === 0) continue;
        const cdbBytes = Array.from(usage);
        cdbBytes.fill(0, 1);
        if (hasSa) cdbBytes[1] = usage[1];
        cdbBytes[i] |= forbidden;
        const probe = command(cdbBytes, { inLength: 64 });
        expect(await run(disk, probe)).toBe(CHECK);
        expect(sense(probe)).toEqual({ key: 5, asc: 0x24, ascq: 0 });
        expect(fieldPointer(probe).byte).toBe(i);
      }
    }
  });
});

describe('REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS', () => {
  it.each([
    [0x00, [0xc8, 0x01, 0, 0]],
    [0x80, [0xc8, 0x01, 0, 0x0c, ...Array(12).fill(0)]],
  ])('REPD=%i', async (byte2, expected) => {
    const { data, status } = await ask([0xa3, 0x0d, byte2, 0, 0, 0, 0, 0, 0, 64, 0, 0]);
    expect(status).toBe(GOOD);
    expect([...data]).toEqual(expected);
  });
});
