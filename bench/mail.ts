/**
 * Generated mail for the benchmark: plain-text messages stored the way Postfix and Dovecot's LDA store them on
 * Unix (LF line endings, so both servers convert to CRLF on the way out), no line starting with '.', written
 * straight into a Maildir's new/.
 *
 * Two naming styles:
 *   - 'sized':   `<sec>.M<usec>P<pid>Q<n>.<host>,S=<physical>,W=<wire>`: both servers can list without reading;
 *   - 'postfix': `<sec>.V<dev>I<ino>M<usec>.<host>` (no sizes): the first listing has to read every file, later
 *                ones use the server's cache (Postern: postern-sizes; Dovecot: dovecot.index.cache).
 */
import { closeSync, linkSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

export type NameStyle = 'sized' | 'postfix';

const WORDS = (
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they ' +
  'you were her she there been one all we their has would when if so no will more out up into do any your what ' +
  'mail server message queue delivery header body client session retrieve mailbox storage benchmark throughput'
).split(' ');

/** Deterministic text of exactly `size` bytes: lines of 30–76 characters ending in LF, none starting with '.'. */
export function text(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  const rand = () => {
    // xorshift32: fast and reproducible.
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  let o = 0;
  while (o < size) {
    const want = 30 + (rand() % 47);
    let line = '';
    while (line.length < want) line += (line ? ' ' : '') + WORDS[rand() % WORDS.length];
    const bytes = Buffer.from(`${line.slice(0, want)}\n`, 'latin1');
    o += bytes.copy(out, o, 0, Math.min(bytes.length, size - o));
  }
  if (size > 0) out[size - 1] = 0x0a;
  return out;
}

/** A message of about `size` bytes (headers included), LF line endings. */
export function message(size: number, n: number): Buffer {
  const headers = Buffer.from(
    `Return-Path: <sender@bench.example>\n` +
      `Received: from bench.example by bench.example with ESMTP id ${n}\n` +
      `Message-ID: <bench.${n}@bench.example>\n` +
      `Date: Tue, 14 Nov 2023 22:13:20 +0000\n` +
      `From: Sender <sender@bench.example>\n` +
      `To: Reader <reader@bench.example>\n` +
      `Subject: Benchmark message ${n}\n` +
      `MIME-Version: 1.0\n` +
      `Content-Type: text/plain; charset=us-ascii\n\n`,
    'latin1',
  );
  return Buffer.concat([headers, text(Math.max(1, size - headers.length), n + 1)]);
}

/** Bytes a POP3 client receives for stored bytes with LF endings only (each LF becomes CRLF). */
export function wireSize(stored: Buffer): number {
  let lf = 0;
  let i = stored.indexOf(0x0a);
  while (i !== -1) {
    lf++;
    i = stored.indexOf(0x0a, i + 1);
  }
  return stored.length + lf;
}

export function fileName(style: NameStyle, n: number, physical: number, wire: number): string {
  const sec = 1_700_000_000 + Math.floor(n / 1000);
  const usec = (n % 1000) * 1000;
  return style === 'sized'
    ? `${sec}.M${usec}P4242Q${n}.bench,S=${physical},W=${wire}`
    : `${sec}.V803I${(n + 1).toString(16)}M${usec}.bench`;
}

/** ROOT/USER/Maildir with new/, cur/, tmp/. */
export function makeMaildir(root: string, user: string): string {
  const dir = join(root, user, 'Maildir');
  for (const f of ['new', 'cur', 'tmp']) mkdirSync(join(dir, f), { recursive: true });
  return dir;
}

/** Writes `count` messages made by `make(n)` into new/. */
export function writeMessages(
  maildir: string,
  count: number,
  style: NameStyle,
  make: (n: number) => Buffer,
): { bytes: number; wireBytes: number } {
  let bytes = 0;
  let wireBytes = 0;
  for (let n = 0; n < count; n++) {
    const data = make(n);
    const wire = wireSize(data);
    writeFileSync(join(maildir, 'new', fileName(style, n, data.length, wire)), data);
    bytes += data.length;
    wireBytes += wire;
  }
  return { bytes, wireBytes };
}

/** One large message of about `size` bytes, written 1 MB at a time (never held in memory whole). */
export function writeBigMessage(maildir: string, size: number, n: number): { bytes: number; wireBytes: number } {
  const head = message(1024, n);
  const block = text(1 << 20, 7);
  const blockWire = wireSize(block);
  const blocks = Math.max(1, Math.round((size - head.length) / block.length));
  const bytes = head.length + blocks * block.length;
  const wire = wireSize(head) + blocks * blockWire;
  const path = join(maildir, 'new', fileName('sized', n, bytes, wire));
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, head);
    for (let i = 0; i < blocks; i++) writeSync(fd, block);
  } finally {
    closeSync(fd);
  }
  return { bytes, wireBytes: wire };
}

/**
 * Fills `maildir` with hard links to the messages of `from` (a 'sized' Maildir written by writeMessages), under
 * names of another style: the same bytes for a fraction of the cost of writing them again. Neither server ever
 * writes into a message file, so sharing the inodes is safe.
 */
export function linkMessages(from: string, maildir: string, style: NameStyle): number {
  const names = readdirSync(join(from, 'new'));
  for (const name of names) {
    const m = /Q(\d+)\.bench,S=(\d+),W=(\d+)$/.exec(name);
    if (!m) throw new Error(`unexpected generated name ${name}`);
    linkSync(join(from, 'new', name), join(maildir, 'new', fileName(style, Number(m[1]), Number(m[2]), Number(m[3]))));
  }
  return names.length;
}
