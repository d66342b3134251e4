/**
 * End to end on the real `postern serve` process: a message sent by swaks over LMTP is read by curl over
 * POP3; then the metrics endpoint, scraped, shows what that traffic did; the health endpoint answers.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { replies, swaks } from '../delivery/helpers.ts';
import { skipUnlessCi } from '../helpers/peers.ts';
import { freePort, type RealServer, startRealServer } from '../helpers/realServer.ts';
import { Wire } from '../helpers/wire.ts';

const HAVE_TOOLS = spawnSync('swaks', ['--version']).status === 0 && spawnSync('curl', ['--version']).status === 0;

function curl(args: string[]) {
  const r = spawnSync('curl', ['-sS', '--max-time', '20', ...args], { encoding: 'utf8', timeout: 30_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** The sum of a metric's samples whose labels include all of `labels` (e.g. 'result="ok"'). */
function total(text: string, name: string, ...labels: string[]): number {
  let sum = 0;
  for (const l of text.split('\n')) {
    const m = /^(\w+)(\{[^}]*\})? (\S+)$/.exec(l);
    if (m && m[1] === name && labels.every((x) => (m[2] ?? '').includes(x))) sum += Number(m[3]);
  }
  return sum;
}

/** The value of one sample in Prometheus text, or undefined when absent. */
function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text
    .split('\n')
    .find((l) => l.startsWith(`${name}${labels} `) || (labels === '' && l.startsWith(`${name} `)));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('end to end: swaks → LMTP → postern serve → POP3 → curl', {
  skip: skipUnlessCi(!HAVE_TOOLS && 'swaks or curl missing'),
}, () => {
  let s: RealServer;
  let lmtpPort: number;
  let metricsPort: number;

  before(async () => {
    lmtpPort = await freePort();
    metricsPort = await freePort();
    s = await startRealServer({
      extraConfig: `
[lmtp]
address = "127.0.0.1"
port = ${lmtpPort}

[metrics]
enabled = true
address = "127.0.0.1"
port = ${metricsPort}
`,
    });
    s.addUser('alice', 'wonderland');
    await s.start();
  });
  after(() => s.stop());

  test('a message delivered over LMTP is read back over POP3, with the trace headers', async () => {
    const r = await swaks([
      '--server',
      '127.0.0.1',
      '--port',
      String(lmtpPort),
      '--from',
      'bob@example.net',
      '--to',
      'alice@example.com',
      '--header',
      'Subject: over the wall',
      '--body',
      'Hello Alice,\nthis came in over LMTP.\n',
    ]);
    assert.equal(r.code, 0, r.out);
    assert.ok(
      replies(r.out).some((l) => /^250 2\.6\.0 <alice@example\.com>/.test(l)),
      r.out,
    );

    const got = curl([`pop3://alice:wonderland@127.0.0.1:${s.port}/1`]);
    assert.equal(got.status, 0, got.stderr);
    assert.match(got.stdout, /^Return-Path: <bob@example\.net>\r\nDelivered-To: alice@example\.com\r\n/);
    assert.match(got.stdout, /Subject: over the wall\r\n/);
    assert.match(got.stdout, /Hello Alice,\r\nthis came in over LMTP\.\r\n/);
  });

  test('metrics scraped after the POP3 session show the counters moved', async () => {
    // The session's 'disconnect' is logged as it closes; give it a moment (bounded).
    let text = '';
    for (let i = 0; i < 50; i++) {
      const res = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      text = await res.text();
      if (sample(text, 'postern_pop3_session_duration_seconds_count') === 1) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(sample(text, 'postern_connections_total', '{protocol="pop3"}'), 1, text);
    // curl picks the mechanism (USER/PASS or a SASL one, depending on what CAPA offers).
    assert.equal(total(text, 'postern_pop3_logins_total', 'result="ok"'), 1, text);
    assert.equal(sample(text, 'postern_pop3_commands_total', '{verb="RETR",result="ok"}'), 1);
    assert.equal(sample(text, 'postern_pop3_commands_total', '{verb="QUIT",result="ok"}'), 1);
    assert.equal(sample(text, 'postern_pop3_session_duration_seconds_count'), 1);
    assert.equal(sample(text, 'postern_pop3_messages_retrieved_total'), 1);
    assert.ok((sample(text, 'postern_pop3_sent_bytes_total') ?? 0) > 200, 'bytes sent counted');
    assert.equal(sample(text, 'postern_deliveries_total', '{result="delivered"}'), 1);
    assert.ok((sample(text, 'postern_delivered_bytes_total') ?? 0) > 100);
    assert.equal(sample(text, 'postern_pop3_sessions_active'), 0);
    // Standard names, so stock dashboards work (issue 8).
    assert.ok(sample(text, 'process_resident_memory_bytes') !== undefined, 'process metrics');
    assert.ok(sample(text, 'nodejs_eventloop_lag_seconds') !== undefined, 'Node.js metrics');
    assert.equal(sample(text, 'postern_process_resident_memory_bytes'), undefined);
    assert.match(text, /# HELP postern_deliveries_total Recipients of a delivery/);
  });

  test('a failed login, an unknown verb and a locked maildrop are counted', async () => {
    const holder = await Wire.connect(s.port);
    await holder.line();
    assert.match(await holder.cmd('USER alice'), /^\+OK/);
    assert.match(await holder.cmd('PASS wonderland'), /^\+OK/);
    const bad = curl([`pop3://alice:wrong@127.0.0.1:${s.port}/`]);
    assert.notEqual(bad.status, 0);
    const locked = curl([`pop3://alice:wonderland@127.0.0.1:${s.port}/`]);
    assert.notEqual(locked.status, 0, 'the maildrop is locked by the first session');
    assert.match(await holder.cmd('XYZZY'), /^-ERR/);
    assert.match(await holder.cmd('QUIT'), /^\+OK/);
    holder.destroy();
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    assert.equal(total(text, 'postern_pop3_logins_total', 'result="fail"'), 1, text);
    assert.equal(total(text, 'postern_pop3_logins_total', 'mechanism="USER"', 'result="ok"') >= 1, true);
    assert.equal(sample(text, 'postern_maildrop_lock_contention_total'), 1);
    assert.equal(sample(text, 'postern_pop3_commands_total', '{verb="OTHER",result="unknown"}'), 1);
  });

  test('health answers 200 for load balancers; other paths 404, other methods 405', async () => {
    const h = await fetch(`http://127.0.0.1:${metricsPort}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok' });
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/nope`)).status, 404);
    assert.equal((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST' })).status, 405);
  });
});
