/**
 * Soak: many concurrent idle connections plus a slowloris (connections that trickle a line that never ends),
 * against the real `postern serve` process, while a well-behaved client logs in and retrieves a 1 MB message:
 * every connection is greeted, the good client's login and RETR are timed, and the server's memory per
 * connection is measured.
 *
 * Short (npm test): 500 connections and 20 slowloris. Long (SOAK=1): 10 000 and 200 (the server runs with a
 * raised descriptor limit).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { descriptorLimit } from '../../src/server/descriptors.ts';
import { commandWorks, skipUnlessCi } from '../helpers/peers.ts';
import { dropPostfixStyle, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { figure, soakScale } from '../helpers/soak.ts';
import { Wire } from '../helpers/wire.ts';

const IDLE = soakScale(500, 10_000);
const SLOWLORIS = soakScale(20, 200);
/** Descriptors the server needs: every connection, and room for its files and reserve. */
const NEED_DESCRIPTORS = IDLE + SLOWLORIS + 1_000;
/** Why the limit cannot be had here, or false. */
const noDescriptors =
  NEED_DESCRIPTORS > (descriptorLimit() ?? 0) &&
  !commandWorks('prlimit', [`--nofile=${NEED_DESCRIPTORS}:${NEED_DESCRIPTORS}`, 'true']) &&
  `needs ${NEED_DESCRIPTORS} file descriptors and cannot raise the limit (ulimit -n)`;
const BIG = `Subject: big\n\n${`${'0123456789abcdef'.repeat(4)}\n`.repeat(16 * 1024)}`; // ~1 MB

let s: RealServer;
before(async () => {
  if (noDescriptors) return;
  s = await startRealServer({
    limits: `max_connections = ${IDLE + SLOWLORIS + 100}\nmax_connections_per_address = ${IDLE + SLOWLORIS + 100}\nidle_timeout_auth = 300`,
    // Raised only where the inherited limit is too small (and only a privileged user can raise it).
    nofile: NEED_DESCRIPTORS > (descriptorLimit() ?? 0) ? NEED_DESCRIPTORS : undefined,
    logLevel: 'info',
  });
  s.addUser('good', 'good password');
  dropPostfixStyle(s.maildir('good'), '1700000001.V1I1M1.host', BIG);
  await s.start();
});
after(async () => {
  await s?.stop();
});

function serverRssKiB(): number {
  const pid = Number(/"pid":(\d+)/.exec(s.logs())?.[1]);
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)?.[1]);
}

/** Opens one connection and resolves once it is greeted (true) or closed without a greeting (false). */
function idle(port: number, sockets: Socket[]): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ port, host: '127.0.0.1' });
    sockets.push(sock);
    let got = '';
    sock.on('error', () => resolve(false));
    sock.on('close', () => resolve(false));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('\r\n')) resolve(got.startsWith('+OK'));
    });
  });
}

/** Log in and retrieve the 1 MB message; milliseconds for each. */
async function goodClient(port: number): Promise<{ loginMs: number; retrMs: number }> {
  const w = await Wire.connect(port);
  await w.line();
  const t0 = Date.now();
  await w.cmd('USER good');
  assert.match(await w.cmd('PASS good password'), /^\+OK/);
  const t1 = Date.now();
  assert.match(await w.cmd('RETR 1'), /^\+OK \d+ octets/);
  const body = await w.body();
  const t2 = Date.now();
  assert.ok(body.length > 1_000_000, `RETR gave ${body.length} bytes`);
  await w.cmd('QUIT');
  return { loginMs: t1 - t0, retrMs: t2 - t1 };
}

test(`${IDLE} idle connections and ${SLOWLORIS} slowloris: all greeted; a good client's login and RETR stay fast`, {
  skip: skipUnlessCi(noDescriptors),
}, async () => {
  const quiet = await goodClient(s.port);
  const rss0 = serverRssKiB();
  const sockets: Socket[] = [];
  let greeted = 0;
  for (let i = 0; i < IDLE; i += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, IDLE - i) }, () => idle(s.port, sockets)));
    greeted += batch.filter(Boolean).length;
  }
  // Slowloris: a USER line that grows by a byte every 100 ms and never ends.
  const loris: Socket[] = [];
  for (let i = 0; i < SLOWLORIS; i++) {
    if (await idle(s.port, loris)) loris[loris.length - 1].write('USER ');
  }
  let trickling = true;
  const trickle = (async () => {
    while (trickling) {
      for (const l of loris) if (!l.destroyed) l.write('a');
      await sleep(100);
    }
  })();
  const rss1 = serverRssKiB();
  const during: { loginMs: number; retrMs: number }[] = [];
  for (let i = 0; i < 3; i++) during.push(await goodClient(s.port));
  trickling = false;
  await trickle;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const login = median(during.map((d) => d.loginMs));
  const retr = median(during.map((d) => d.retrMs));
  const lorisOpen = loris.filter((l) => !l.destroyed).length;
  for (const sock of [...sockets, ...loris]) sock.destroy();
  const perConnection = ((rss1 - rss0) / (IDLE + SLOWLORIS)).toFixed(1);
  figure(
    'connections + slowloris',
    `${greeted}/${IDLE} idle connections greeted, ${lorisOpen}/${SLOWLORIS} slowloris held; good client login ${login} ms, RETR 1 MB ${retr} ms (${quiet.loginMs}/${quiet.retrMs} ms when quiet); server RSS ${Math.round(rss0 / 1024)} → ${Math.round(rss1 / 1024)} MB, ~${perConnection} KiB per connection`,
  );
  assert.equal(greeted, IDLE);
  assert.ok(login < 5_000 && retr < 10_000, `login ${login} ms, RETR ${retr} ms under load`);
});
