/**
 * Reading a few header fields (Date, Subject) from the start of a stored message, for `postern mailbox list`:
 * only the header is read, at most MAX_HEADER_BYTES of it, and the stream is closed after.
 */
import type { Readable } from 'node:stream';

/** A header larger than this is cut: list needs two fields, not a pathological header. */
export const MAX_HEADER_BYTES = 256 * 1024;

/** Reads the header section (up to the first empty line) of a message stream, then destroys the stream. */
export async function readHeaderSection(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of stream) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
      chunks.push(buf);
      total += buf.length;
      const all = Buffer.concat(chunks, total);
      const end = headerEnd(all);
      if (end !== -1) return all.subarray(0, end).toString('latin1');
      if (total >= MAX_HEADER_BYTES) return all.subarray(0, MAX_HEADER_BYTES).toString('latin1');
      chunks.length = 0;
      chunks.push(all);
    }
    return Buffer.concat(chunks, total).toString('latin1');
  } finally {
    stream.destroy();
  }
}

/** Index just after the header's last line (before the empty line), or -1 while not seen. */
function headerEnd(buf: Buffer): number {
  if (buf[0] === 0x0a) return 0;
  if (buf[0] === 0x0d && buf[1] === 0x0a) return 0;
  const a = buf.indexOf('\n\n');
  const b = buf.indexOf('\n\r\n');
  const ends = [a, b].filter((i) => i !== -1);
  return ends.length === 0 ? -1 : Math.min(...ends) + 1;
}

/** The unfolded value of the first field named `name` (case-insensitive), or undefined. */
export function headerField(header: string, name: string): string | undefined {
  const lines = header.split(/\r?\n/);
  const prefix = `${name.toLowerCase()}:`;
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].toLowerCase().startsWith(prefix)) continue;
    let value = lines[i].slice(prefix.length);
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1])) value += lines[++i];
    return value.replace(/[ \t]+/g, ' ').trim();
  }
  return undefined;
}

/**
 * Decodes RFC 2047 encoded-words (`=?UTF-8?B?…?=`, `=?ISO-8859-1?Q?…?=`) in a field value; the header was
 * read as latin1, so raw 8-bit UTF-8 (RFC 6532) is decoded too. Charsets TextDecoder does not know stay as
 * they are.
 */
export function decodeFieldValue(value: string): string {
  let text = value;
  if (/[\x80-\xff]/.test(text)) {
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(text, 'latin1'));
    } catch {
      // not UTF-8: leave as latin1
    }
  }
  // Whitespace between two encoded-words is not part of the text (RFC 2047 §6.2).
  text = text.replace(/(\?=)\s+(=\?)/g, '$1$2');
  return text.replace(/=\?([^?\s]+)\?([bBqQ])\?([^?\s]*)\?=/g, (whole, charset: string, enc: string, data: string) => {
    try {
      const bytes =
        enc.toUpperCase() === 'B'
          ? Buffer.from(data, 'base64')
          : Buffer.from(
              data
                .replace(/_/g, ' ')
                .replace(/=([0-9A-Fa-f]{2})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))),
              'latin1',
            );
      return new TextDecoder(charset.split('*')[0].toLowerCase()).decode(bytes);
    } catch {
      return whole;
    }
  });
}
