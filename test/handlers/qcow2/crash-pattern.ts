/**
 * Self-describing sector contents for the crash test: every 512-byte sector
 * a write puts down names the write (id) and the sector, so after a crash
 * each sector tells which write it holds (0 = zeros / never written).
 */
export const SECTOR = 512;

export function fillPattern(buf: Buffer, id: number, firstSector: number): void {
  for (let s = 0; s * SECTOR < buf.length; s++) {
    const at = s * SECTOR;
    buf.fill((id * 31 + firstSector + s) & 0xff, at, at + SECTOR);
    buf.writeUInt32LE(id, at);
    buf.writeUInt32LE(firstSector + s, at + 4);
  }
}

/** The write id a sector holds: 0 for all zeros, -1 if it is not a valid pattern (torn or foreign data). */
export function decodeSector(buf: Buffer, sector: number): number {
  const id = buf.readUInt32LE(0);
  if (id === 0) return buf.every((b) => b === 0) ? 0 : -1;
  const expected = Buffer.alloc(SECTOR);
  fillPattern(expected, id, sector);
  return expected.equals(buf) ? id : -1;
}

/**
 * What a sector that decodes to -1 holds, for a failure message: the write
 * and sector its header names and whether the rest matches that write's
 * pattern (data of another sector or op), or a count of zero bytes.
 */
export function describeSector(buf: Buffer): string {
  const id = buf.readUInt32LE(0);
  const sector = buf.readUInt32LE(4);
  const zeros = buf.reduce((n, b) => n + (b === 0 ? 1 : 0), 0);
  const expected = Buffer.alloc(SECTOR);
  fillPattern(expected, id, sector);
  const whole = expected.equals(buf) ? 'the whole pattern' : `${countEqual(expected, buf)} of ${SECTOR} bytes of it`;
  return `header says op ${id} sector ${sector} (${whole}), ${zeros} zero bytes`;
}

function countEqual(a: Buffer, b: Buffer): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) n++;
  return n;
}
