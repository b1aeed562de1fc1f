/** Parse a byte size: a plain integer, or a number with K/M/G/T/P (binary, optional "iB"/"B"). */
export function parseSize(text: string | number, key: string): number {
  if (typeof text === 'number') {
    if (!Number.isSafeInteger(text) || text <= 0) throw new Error(`${key}: expected a positive integer byte count, got ${text}`);
    return text;
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?\s*$/i.exec(text);
  if (!m) throw new Error(`${key}: "${text}" is not a size (examples: 1073741824, 512M, 10G, 1.5T)`);
  const units = ['', 'k', 'm', 'g', 't', 'p'];
  const bytes = Number(m[1]) * 1024 ** units.indexOf(m[2]!.toLowerCase());
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new Error(`${key}: "${text}" is not a whole positive number of bytes`);
  return bytes;
}
