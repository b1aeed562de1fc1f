/** Copy an ASCII field, space padded, non-printables replaced by spaces (SPC-5 4.3.1). */
export function putAscii(buf: Buffer, at: number, width: number, text: string): void {
  for (let i = 0; i < width; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x20;
    buf[at + i] = c >= 0x20 && c < 0x7f ? c : 0x20;
  }
}
