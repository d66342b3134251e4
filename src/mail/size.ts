/**
 * The size of a message as a POP3 client receives it (RFC 1939 §11: "the exact size ... in octets", which
 * servers compute with CRLF line endings and before dot-stuffing). Postern defines the transmitted form of
 * stored bytes once, here and in DotEncoder (src/protocol/dot.ts), and the two must agree:
 *   - every LF not preceded by CR gets a CR in front of it (bare LF → CRLF);
 *   - a lone CR not followed by LF is data and is sent as is;
 *   - a non-empty message that does not end in LF gets a line ending: LF if it ends in CR, CRLF otherwise;
 *   - an empty message stays empty.
 * Dot-stuffing and the terminator are not counted.
 */
export class SizeCounter {
  private total = 0;
  private last = -1; // last byte seen, -1 before any

  update(chunk: Uint8Array): this {
    const n = chunk.length;
    if (n === 0) return this;
    let added = 0;
    let prev = this.last;
    let i = chunk.indexOf(0x0a);
    let from = 0;
    while (i !== -1) {
      const before = i === 0 ? prev : chunk[i - 1];
      if (before !== 0x0d) added++;
      from = i + 1;
      i = from < n ? chunk.indexOf(0x0a, from) : -1;
    }
    prev = chunk[n - 1];
    this.last = prev;
    this.total += n + added;
    return this;
  }

  /** The transmitted size of everything passed to update(), including the final line-ending repair. */
  digest(): number {
    if (this.last === -1 || this.last === 0x0a) return this.total;
    return this.total + (this.last === 0x0d ? 1 : 2);
  }
}

export function transmittedSize(message: Uint8Array): number {
  return new SizeCounter().update(message).digest();
}
