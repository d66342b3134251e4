/** Failure paths with canned replies: typed errors, timeouts, aborts, broken servers, secrets kept out. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Pop3Client } from '../../src/client/client.ts';
import { Pop3ClientError, Pop3ErrorCode, type Pop3ResponseError } from '../../src/client/errors.ts';
import { FakeServer, type Step } from './fake.ts';

const LOGIN: Step[] = [
  { reply: '+OK hi <1.2@fake>\r\n' },
  { expect: 'CAPA', reply: '+OK\r\nUSER\r\nTOP\r\nUIDL\r\n.\r\n' },
  { expect: 'USER u', reply: '+OK\r\n' },
  { expect: 'PASS secret-pw', reply: '+OK\r\n' },
  { expect: 'CAPA', reply: '+OK\r\nTOP\r\nUIDL\r\n.\r\n' },
];

async function connect(steps: Step[], extra: Partial<Parameters<typeof Pop3Client.connect>[0]> = {}) {
  const fake = new FakeServer(steps);
  const lines: string[] = [];
  const client = await Pop3Client.connect({
    host: 'x',
    tls: 'none',
    socket: fake,
    allowInsecureAuth: true,
    timeoutMs: 2000,
    auth: { user: 'u', password: 'secret-pw', mechanism: 'USER' },
    debug: (d, l) => lines.push(`${d} ${l}`),
    ...extra,
  });
  return { client, fake, lines };
}

function codeOf(err: unknown): string | undefined {
  return err instanceof Pop3ClientError ? err.code : undefined;
}

describe('client errors', () => {
  it('a missing or wrong tls option is a POP3_ERR_OPTIONS error, thrown before any I/O', async () => {
    for (const tls of [undefined, 'ssl']) {
      const fake = new FakeServer([]);
      const options = { host: 'x', socket: fake, tls } as unknown as Parameters<typeof Pop3Client.connect>[0];
      const err = await Pop3Client.connect(options).catch((e: unknown) => e);
      assert.equal(codeOf(err), Pop3ErrorCode.Options, String(tls));
      assert.match((err as Error).message, /tls option/);
      assert.deepEqual(fake.received, []);
    }
  });

  it('response codes are surfaced as typed errors', async () => {
    const { client } = await connect([
      ...LOGIN,
      { expect: 'DELE 1', reply: '-ERR [SYS/PERM] read-only mailbox\r\n' },
      { expect: 'RETR 2', reply: '-ERR no such message\r\n' },
    ]);
    const e1 = (await client.delete(1).catch((e: unknown) => e)) as Pop3ResponseError;
    assert.equal(e1.code, Pop3ErrorCode.Response);
    assert.equal(e1.respCode, 'SYS/PERM');
    assert.equal(e1.text, 'read-only mailbox');
    assert.equal(e1.command, 'DELE');
    assert.equal(e1.temporary, false);
    const e2 = (await client.retrieve(2).catch((e: unknown) => e)) as Pop3ResponseError;
    assert.equal(e2.respCode, undefined);
    assert.equal(client.state, 'TRANSACTION'); // a -ERR does not end the session
    await assert.rejects(client.retrieve(0), RangeError);
    await assert.rejects(client.top(1, -1), RangeError);
    client.destroy();
  });

  it('a refused password is POP3_ERR_AUTH; IN-USE and LOGIN-DELAY stay response errors', async () => {
    for (const [reply, code, respCode] of [
      ['-ERR [AUTH] bad credentials', Pop3ErrorCode.Auth, 'AUTH'],
      ['-ERR wrong', Pop3ErrorCode.Auth, undefined],
      ['-ERR [IN-USE] locked', Pop3ErrorCode.Response, 'IN-USE'],
      ['-ERR [LOGIN-DELAY] wait', Pop3ErrorCode.Response, 'LOGIN-DELAY'],
      ['-ERR [SYS/TEMP] db down', Pop3ErrorCode.Response, 'SYS/TEMP'],
    ] as const) {
      const lines: string[] = [];
      const fake = new FakeServer([...LOGIN.slice(0, 3), { expect: 'PASS secret-pw', reply: `${reply}\r\n` }]);
      const err = await Pop3Client.connect({
        host: 'x',
        tls: 'none',
        socket: fake,
        allowInsecureAuth: true,
        auth: { user: 'u', password: 'secret-pw', mechanism: 'USER' },
        debug: (d, l) => lines.push(`${d} ${l}`),
      }).then(
        () => assert.fail('login should fail'),
        (e: unknown) => e as Pop3ResponseError,
      );
      assert.equal(err.code, code, reply);
      assert.equal(err.respCode, respCode);
      assert.ok(!err.message.includes('secret-pw') && !String(err.stack).includes('secret-pw'));
      assert.ok(!lines.join('\n').includes('secret-pw'), 'password in debug output');
      assert.ok(lines.includes('C PASS <password redacted>'));
    }
  });

  it('APOP sends the digest of timestamp + password, and redacts it in debug output', async () => {
    // MD5("<1.2@fake>secret-pw")
    const digest = (await import('node:crypto')).createHash('md5').update('<1.2@fake>secret-pw').digest('hex');
    const { client, lines } = await connect(
      [...LOGIN.slice(0, 2), { expect: `APOP u ${digest}`, reply: '+OK\r\n' }, LOGIN[4]],
      { auth: { user: 'u', password: 'secret-pw' } },
    );
    assert.equal(client.mechanism, 'APOP'); // preferred over USER: the password does not cross the wire
    assert.ok(!lines.join('\n').includes(digest));
    client.destroy();
  });

  it('refuses to send a password in the clear without allowInsecureAuth', async () => {
    const fake = new FakeServer(LOGIN.slice(0, 2).map((s, i) => (i === 0 ? { reply: '+OK no apop\r\n' } : s)));
    const err = await Pop3Client.connect({
      host: 'x',
      tls: 'none',
      socket: fake,
      auth: { user: 'u', password: 'secret-pw' },
    }).catch((e: unknown) => e);
    assert.equal(codeOf(err), Pop3ErrorCode.Auth);
    assert.match((err as Error).message, /without TLS/);
    assert.ok(!fake.received.some((l) => l.startsWith('USER') || l.startsWith('PASS')));
  });

  it('times out when the server stops answering, and the client is closed', async () => {
    const { client } = await connect([...LOGIN, { expect: 'STAT', reply: '' }], { timeoutMs: 200 });
    const t0 = Date.now();
    const err = await client.stat().catch((e: unknown) => e);
    assert.equal(codeOf(err), Pop3ErrorCode.Timeout);
    assert.ok(Date.now() - t0 < 2000);
    assert.equal(client.state, 'CLOSED');
    assert.equal(codeOf(await client.noop().catch((e: unknown) => e)), Pop3ErrorCode.Timeout);
  });

  it('an abort mid-message closes without QUIT and fails the stream', async () => {
    const ac = new AbortController();
    const partial = Buffer.from('+OK\r\nSubject: x\r\n\r\nfirst part\r\n');
    const { client, fake } = await connect([...LOGIN, { expect: 'RETR 1', reply: partial }], {
      signal: ac.signal,
    });
    const stream = await client.retrieve(1);
    const reading = stream.bytes().catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 20));
    ac.abort();
    assert.equal(codeOf(await reading), Pop3ErrorCode.Aborted);
    assert.equal(client.state, 'CLOSED');
    assert.equal(codeOf(await client.stat().catch((e: unknown) => e)), Pop3ErrorCode.Aborted);
    assert.ok(!fake.received.includes('QUIT'));
    // quit() after an abort reports that the session did not end cleanly.
    assert.equal(codeOf(await client.quit().catch((e: unknown) => e)), Pop3ErrorCode.Aborted);
  });

  it('an already-aborted signal fails connect at once', async () => {
    const err = await Pop3Client.connect({
      host: '127.0.0.1',
      port: 9,
      tls: 'none',
      signal: AbortSignal.abort(),
    }).catch((e: unknown) => e);
    assert.equal(codeOf(err), Pop3ErrorCode.Aborted);
  });

  it('a connection closed mid-body fails the stream with POP3_ERR_CLOSED', async () => {
    const { client } = await connect([...LOGIN, { expect: 'RETR 1', reply: '+OK\r\nhalf a mess', close: true }]);
    const stream = await client.retrieve(1);
    assert.equal(codeOf(await stream.bytes().catch((e: unknown) => e)), Pop3ErrorCode.Closed);
  });

  it('garbage instead of a status line is POP3_ERR_PROTOCOL', async () => {
    const { client } = await connect([...LOGIN, { expect: 'STAT', reply: 'HTTP/1.1 400 Bad Request\r\n' }]);
    assert.equal(codeOf(await client.stat().catch((e: unknown) => e)), Pop3ErrorCode.Protocol);
    assert.equal(client.state, 'CLOSED');
  });

  it('an endless line is cut off (bounded memory) as POP3_ERR_PROTOCOL', async () => {
    const { client } = await connect([...LOGIN, { expect: 'NOOP', reply: `+OK ${'a'.repeat(100_000)}` }]);
    assert.equal(codeOf(await client.noop().catch((e: unknown) => e)), Pop3ErrorCode.Protocol);
  });

  it('an overlong status line arriving whole, CRLF included, is POP3_ERR_PROTOCOL', async () => {
    const { client } = await connect([...LOGIN, { expect: 'NOOP', reply: `+OK ${'a'.repeat(5000)}\r\n` }]);
    assert.equal(codeOf(await client.noop().catch((e: unknown) => e)), Pop3ErrorCode.Protocol);
    assert.equal(client.state, 'CLOSED');
  });

  it('a reply nobody asked for is POP3_ERR_PROTOCOL', async () => {
    const { client } = await connect([...LOGIN, { expect: 'NOOP', reply: '+OK\r\n+OK extra\r\n' }]);
    await client.noop().catch(() => {});
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(codeOf(client.capabilities && (await client.noop().catch((e: unknown) => e))), Pop3ErrorCode.Protocol);
  });

  it('CR or LF in an argument is refused before anything is sent', async () => {
    const fake = new FakeServer([LOGIN[0], LOGIN[1]]);
    const client = await Pop3Client.connect({ host: 'x', tls: 'none', socket: fake });
    await assert.rejects(client.login({ user: 'u\r\nDELE 1', password: 'x', mechanism: 'APOP' }));
    assert.deepEqual(fake.received, ['CAPA']);
    client.destroy();
  });

  it('commands in the wrong state are refused locally', async () => {
    const fake = new FakeServer([LOGIN[0], LOGIN[1]]);
    const client = await Pop3Client.connect({ host: 'x', tls: 'none', socket: fake });
    assert.equal(codeOf(await client.stat().catch((e: unknown) => e)), Pop3ErrorCode.State);
    client.destroy();
  });

  it('QUIT answered with -ERR (deletions failed) is thrown', async () => {
    const { client } = await connect([
      ...LOGIN,
      { expect: 'DELE 1', reply: '+OK\r\n' },
      { expect: 'QUIT', reply: '-ERR [SYS/TEMP] could not delete\r\n', close: true },
    ]);
    await client.delete(1);
    const err = (await client.quit().catch((e: unknown) => e)) as Pop3ResponseError;
    assert.equal(err.respCode, 'SYS/TEMP');
    assert.equal(client.state, 'CLOSED');
  });
});
