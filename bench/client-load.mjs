/**
 * The Pop3Client side of the client bench (bench/client.ts): one process that logs in, lists, RETRs every message
 * pipelined and reads each body to the end, N times (a new connection per pass). Plain JavaScript, so a fresh
 * process costs what a library user's would: `--module` names the client to load (dist/client/client.js, or
 * src/client/client.ts when run with `--import tsx`). Prints one JSON line: { passes: [seconds per pass],
 * cpu: [CPU seconds per pass], maxRssKiB, messages, bytes } and, with --verify, the sha1 of every message in its stored form (CRLF → LF)
 * from one extra, untimed pass.
 *   --api stream   retrieve(): a Readable per message, read with for await (the general API)
 *   --api each     retrieveEach(): the bodies handed to a sink in one pipelined run (no object per message)
 */
import { createHash } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    module: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    user: { type: 'string' },
    password: { type: 'string' },
    passes: { type: 'string', default: '1' },
    api: { type: 'string', default: 'stream' },
    verify: { type: 'boolean' },
  },
});
const { Pop3Client } = await import(pathToFileURL(values.module ?? '').href);

/** sha1 of the stored form (CRLF → LF) of one message, fed in chunks that may split a CRLF. */
function hasher() {
  const h = createHash('sha1');
  let cr = false;
  return {
    update(b) {
      let data = cr ? Buffer.concat([Buffer.from([0x0d]), b]) : b;
      cr = data.length > 0 && data[data.length - 1] === 0x0d;
      if (cr) data = data.subarray(0, data.length - 1);
      h.update(Buffer.from(data.toString('latin1').replace(/\r\n/g, '\n'), 'latin1'));
    },
    digest() {
      if (cr) h.update(Buffer.from([0x0d]));
      return h.digest('hex');
    },
  };
}

async function pass(hashes) {
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const client = await Pop3Client.connect({
    host: values.host,
    port: Number(values.port),
    tls: 'none',
    allowInsecureAuth: true,
    pipelining: 64,
    auth: { user: values.user, password: values.password },
  });
  const list = await client.list();
  let bytes = 0;
  if (values.api === 'each') {
    let h;
    await client.retrieveEach(
      list.map((m) => m.number),
      {
        begin() {
          if (hashes) h = hasher();
        },
        data(chunk) {
          bytes += chunk.length;
          h?.update(chunk);
        },
        end() {
          if (h) hashes.push(h.digest());
        },
      },
    );
  } else {
    const streams = list.map((m) => client.retrieve(m.number));
    for (const p of streams) {
      const s = await p;
      const h = hashes ? hasher() : undefined;
      for await (const chunk of s) {
        bytes += chunk.length;
        h?.update(chunk);
      }
      if (h) hashes.push(h.digest());
    }
  }
  await client.quit();
  const c = process.cpuUsage(c0);
  return {
    secs: Number(process.hrtime.bigint() - t0) / 1e9,
    cpu: (c.user + c.system) / 1e6,
    messages: list.length,
    bytes,
  };
}

const passes = [];
const cpu = [];
let last = { secs: 0, cpu: 0, messages: 0, bytes: 0 };
for (let i = 0; i < Number(values.passes); i++) {
  last = await pass();
  passes.push(last.secs);
  cpu.push(last.cpu);
}
let hashes;
if (values.verify) {
  hashes = [];
  await pass(hashes);
  hashes.sort();
}
process.stdout.write(
  `${JSON.stringify({ passes, cpu, maxRssKiB: process.resourceUsage().maxRSS, messages: last.messages, bytes: last.bytes, hashes })}\n`,
);
