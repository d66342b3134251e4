/**
 * The Pop3Client side of the client bench (bench/client.ts): one process that logs in, lists, RETRs every message
 * pipelined and reads each body to the end, N times (a new connection per pass). Prints one JSON line:
 * { passes: [seconds per pass], maxRssKiB, messages, bytes } and, with --verify, the sha1 of every message in its
 * stored form (CRLF → LF) from one extra, untimed pass.
 */
import { createHash } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Pop3Client } from '../src/client/client.ts';

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    passes: { type: 'string', default: '1' },
    verify: { type: 'boolean' },
  },
});

async function pass(hashes?: string[]): Promise<{ secs: number; messages: number; bytes: number }> {
  const t0 = process.hrtime.bigint();
  const client = await Pop3Client.connect({
    host: values.host ?? '127.0.0.1',
    port: Number(values.port),
    tls: 'none',
    allowInsecureAuth: true,
    auth: { user: values.user ?? '', password: values.password ?? '' },
  });
  const list = await client.list();
  const streams = list.map((m) => client.retrieve(m.number));
  let bytes = 0;
  for (const p of streams) {
    const s = await p;
    const h = hashes ? createHash('sha1') : undefined;
    let cr = false;
    for await (const chunk of s) {
      const b = chunk as Buffer;
      bytes += b.length;
      if (h) {
        // Stored form: CRLF → LF (a chunk may end between CR and LF).
        let data: Buffer = cr ? Buffer.concat([Buffer.from([0x0d]), b]) : b;
        cr = data.length > 0 && data[data.length - 1] === 0x0d;
        if (cr) data = data.subarray(0, data.length - 1);
        h.update(Buffer.from(data.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'));
      }
    }
    if (h && hashes) {
      if (cr) h.update(Buffer.from([0x0d]));
      hashes.push(h.digest('hex'));
    }
  }
  await client.quit();
  return { secs: Number(process.hrtime.bigint() - t0) / 1e9, messages: list.length, bytes };
}

const passes: number[] = [];
let last = { secs: 0, messages: 0, bytes: 0 };
for (let i = 0; i < Number(values.passes); i++) {
  last = await pass();
  passes.push(last.secs);
}
let hashes: string[] | undefined;
if (values.verify) {
  hashes = [];
  await pass(hashes);
  hashes.sort();
}
process.stdout.write(
  `${JSON.stringify({ passes, maxRssKiB: process.resourceUsage().maxRSS, messages: last.messages, bytes: last.bytes, hashes })}\n`,
);
