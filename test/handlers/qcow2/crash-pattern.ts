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
