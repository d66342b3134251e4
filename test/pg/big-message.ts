/**
 * A large message into a real `postern serve` over LMTP and out again with RETR, for test/pg/large.test.ts and
 * bench/pg-memory.ts: lines of 99 octets and CRLF (so the stored and the transmitted size agree, and no line
 * starts with a dot), sent with backpressure, every octet optionally hashed on both sides.
 */
import type { Hash } from 'node:crypto';
import { connect, type Socket } from 'node:net';

const MB = 1 << 20;
const LINE = Buffer.from(`${'m'.repeat(99)}\r\n`);
/** About 1 MB of whole lines. */
const BLOCK = Buffer.concat(Array.from({ length: Math.floor(MB / LINE.length) }, () => LINE));
const HEADER = Buffer.from('Subject: big\r\n\r\n');

/** Reads from a socket until `re` matches what came; bounded by `ms`. */
export function reader(s: Socket) {
  let buf = '';
  s.setEncoding('latin1');
  s.on('data', (d: string) => {
    buf += d;
  });
  return async (re: RegExp, ms = 300_000): Promise<string> => {
    const deadline = Date.now() + ms;
    for (;;) {
      const m = re.exec(buf);
      if (m) {
        buf = buf.slice(m.index + m[0].length);
        return m[0];
      }
      if (Date.now() > deadline) throw new Error(`timeout waiting for ${re}: ${JSON.stringify(buf.slice(0, 200))}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
}

/**
 * Delivers a message of at least `size` octets (whole blocks of lines after a Subject header) to `rcpt` over
 * LMTP; resolves with the server's reply to the end of DATA. `sent` sees every octet of the message.
 */
export async function deliverLarge(lmtpPort: number, rcpt: string, size: number, sent?: Hash): Promise<string> {
  const lmtp = connect({ host: '127.0.0.1', port: lmtpPort });
  const wait = reader(lmtp);
  await wait(/^220 .*\r\n/m);
  lmtp.write(`LHLO t\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<${rcpt}>\r\nDATA\r\n`);
  await wait(/^354 .*\r\n/m);
  lmtp.write(HEADER);
  sent?.update(HEADER);
  for (let n = HEADER.length; n < size; n += BLOCK.length) {
    sent?.update(BLOCK);
    if (!lmtp.write(BLOCK)) await new Promise((r) => lmtp.once('drain', r));
  }
  lmtp.write('.\r\n');
  const answer = await wait(/^\d{3} .*\r\n/m);
  lmtp.end('QUIT\r\n');
  return answer;
}

/**
 * Logs in, retrieves message 1 (with `dele`, deletes it before QUIT) and resolves with the octets of the
 * message from our Subject line on (delivery adds Return-Path and Delivered-To above it) up to the terminating
 * CRLF.CRLF, which `got` sees.
 */
export function retrieveLarge(port: number, user: string, pass: string, got?: Hash, dele = false): Promise<number> {
  const pop = connect({ host: '127.0.0.1', port });
  return new Promise<number>((resolve, reject) => {
    let state = 0;
    let head = '';
    let octets = 0;
    let started = false;
    let finished = false;
    let tail: Buffer = Buffer.alloc(0);
    const end = () => {
      finished = true;
      pop.end(dele ? 'DELE 1\r\nQUIT\r\n' : 'QUIT\r\n');
      pop.once('close', () => resolve(octets));
    };
    pop.on('data', (d: Buffer) => {
      if (finished) return;
      if (state < 4) {
        head += d.toString('latin1');
        const lines = head.split('\r\n');
        // greeting, USER, PASS, RETR status line
        while (state < 4 && lines.length > 1) {
          const line = lines.shift() ?? '';
          if (!line.startsWith('+OK')) return reject(new Error(`unexpected: ${line}`));
          state++;
          if (state === 1) pop.write(`USER ${user}\r\n`);
          if (state === 2) pop.write(`PASS ${pass}\r\n`);
          if (state === 3) pop.write('RETR 1\r\n');
        }
        head = lines.join('\r\n');
        if (state < 4) return;
        d = Buffer.from(head, 'latin1');
      }
      let all = tail.length > 0 ? Buffer.concat([tail, d]) : d;
      if (!started) {
        const at = all.indexOf('Subject: big\r\n');
        if (at < 0) {
          tail = all;
          return;
        }
        all = all.subarray(at);
        started = true;
      }
      const stop = all.indexOf('\r\n.\r\n');
      const keep = stop >= 0 ? stop + 2 : Math.max(0, all.length - 4);
      got?.update(all.subarray(0, keep));
      octets += keep;
      tail = all.subarray(keep);
      if (stop >= 0) end();
    });
    pop.on('error', reject);
  });
}

/** Resolves once something accepts on `port`; throws when `server` exits first or after `ms`. */
export async function waitForPort(port: number, server: { exitCode: number | null }, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const up = await new Promise<boolean>((r) => {
      const s = connect({ host: '127.0.0.1', port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (up) return;
    if (server.exitCode !== null || Date.now() > deadline) throw new Error('server did not start');
    await new Promise((r) => setTimeout(r, 100));
  }
}
