/** RFC 5034 AUTH: framing, every mechanism through the server, cancel, bad input, limits. */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createSaslClient } from '../../src/auth/sasl/index.ts';
import { startTestServer, type TestServer } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const b64 = (s: string | Buffer) => Buffer.from(s).toString('base64');
const TOKEN = `tok-${'x'.repeat(20_000)}`; // larger than the 16 KB continuation lines must accept

async function greeted(port: number): Promise<Wire> {
  const w = await Wire.connect(port);
  await w.line();
  return w;
}

/** Runs a whole exchange with our SASL client side; returns the final server line. */
async function exchange(w: Wire, mechanism: string, creds: Parameters<typeof createSaslClient>[1]): Promise<string> {
  const c = createSaslClient(mechanism, creds);
  assert.ok(c, mechanism);
  const first = c.start();
  const inline = first === null ? '' : ` ${first.length ? b64(first) : '='}`;
  // RFC 5034 §4: an initial response goes inline only if the line stays within 255 octets.
  let line = await w.cmd(
    inline.length + mechanism.length + 7 <= 255 ? `AUTH ${mechanism}${inline}` : `AUTH ${mechanism}`,
  );
  while (line.startsWith('+ ')) {
    line = await w.cmd(b64(c.step(Buffer.from(line.slice(2), 'base64'))));
  }
  if (line.startsWith('+OK')) c.finish();
  return line;
}

describe('AUTH (RFC 5034)', () => {
  let t: TestServer;
  let bearerFails = false;
  before(async () => {
    t = await startTestServer({
      users: { alice: { password: 'wonderland', secret: 'tanstaaf' }, bob: { password: 'builder' } },
      server: {
        bearer: {
          async verifyBearer(token, user) {
            if (bearerFails) throw new Error('token service down');
            return token === TOKEN && (user === undefined || user === 'alice')
              ? { user: 'alice', mailboxId: 'alice' }
              : null;
          },
        },
      },
    });
  });
  after(() => t.close());

  test('CAPA lists SASL; bare AUTH lists the mechanisms', async () => {
    const w = await greeted(t.port);
    await w.cmd('CAPA');
    const sasl = (await w.lines()).find((c) => c.startsWith('SASL '));
    assert.equal(sasl, 'SASL SCRAM-SHA-256 PLAIN LOGIN CRAM-MD5 OAUTHBEARER XOAUTH2');
    assert.match(await w.cmd('AUTH'), /^\+OK/);
    assert.deepEqual(await w.lines(), ['SCRAM-SHA-256', 'PLAIN', 'LOGIN', 'CRAM-MD5', 'OAUTHBEARER', 'XOAUTH2']);
    w.destroy();
  });

  for (const [mech, creds] of [
    ['PLAIN', { username: 'bob', password: 'builder' }],
    ['LOGIN', { username: 'bob', password: 'builder' }],
    ['CRAM-MD5', { username: 'alice', password: 'tanstaaf' }],
    ['SCRAM-SHA-256', { username: 'bob', password: 'builder' }],
    ['OAUTHBEARER', { username: 'alice', token: TOKEN, host: 'localhost', port: 110 }],
    ['XOAUTH2', { username: 'alice', token: TOKEN }],
  ] as const) {
    test(`${mech}: a good exchange logs in; a bad one gets [AUTH] and stays in AUTHORIZATION`, async () => {
      const w = await greeted(t.port);
      const bad = 'token' in creds ? { ...creds, token: 'wrong' } : { ...creds, password: `${creds.password}-wrong` };
      assert.equal(await exchange(w, mech, bad), '-ERR [AUTH] Authentication failed.');
      assert.match(await exchange(w, mech, creds), /^\+OK Logged in/);
      assert.match(await w.cmd('STAT'), /^\+OK 0 0$/);
      await w.cmd('QUIT');
    });
  }

  test('PLAIN without an initial response gets an empty challenge; "=" is an empty initial response', async () => {
    const w = await greeted(t.port);
    assert.equal(await w.cmd('AUTH PLAIN'), '+ ');
    assert.match(await w.cmd(b64('\0bob\0builder')), /^\+OK/);
    await w.cmd('QUIT');
    const w2 = await greeted(t.port);
    assert.match(await w2.cmd('AUTH PLAIN ='), /^-ERR \[AUTH\]/);
    w2.destroy();
  });

  test('"*" cancels; bad base64 and unknown mechanisms are refused; the session goes on', async () => {
    const w = await greeted(t.port);
    assert.equal(await w.cmd('AUTH LOGIN'), `+ ${b64('Username:')}`);
    assert.equal(await w.cmd('*'), '-ERR Authentication cancelled.');
    assert.match(await w.cmd('AUTH PLAIN ###'), /^-ERR Invalid base64/);
    assert.equal(await w.cmd('AUTH LOGIN'), `+ ${b64('Username:')}`);
    assert.match(await w.cmd('not*base64'), /^-ERR Invalid base64/);
    assert.match(await w.cmd('AUTH KERBEROS_V4'), /^-ERR Unsupported/);
    assert.match(await w.cmd('AUTH PLAIN a b'), /^-ERR Usage/);
    assert.match(await w.cmd('STAT'), /^-ERR /); // still AUTHORIZATION
    assert.match(await w.cmd(`AUTH PLAIN ${b64('\0bob\0builder')}`), /^\+OK/);
    assert.match(await w.cmd('AUTH PLAIN x'), /^-ERR AUTH is not valid in the TRANSACTION state/);
    await w.cmd('QUIT');
  });

  test('a continuation line beyond the limit is refused; the command line keeps the normal limit', async () => {
    const w = await greeted(t.port);
    assert.equal(await w.cmd('AUTH XOAUTH2'), '+ ');
    assert.match(await w.cmd('A'.repeat(40_000)), /^-ERR Authentication data too long/);
    assert.match(await w.cmd(`AUTH PLAIN ${'A'.repeat(2000)}`), /^-ERR Line too long/);
    w.destroy();
  });

  test('OAUTHBEARER failure sends the JSON error challenge, then -ERR after the client acknowledges', async () => {
    const w = await greeted(t.port);
    const bad = Buffer.from('n,a=alice,\x01auth=Bearer nope\x01\x01');
    const challenge = await w.cmd(`AUTH OAUTHBEARER ${b64(bad)}`);
    assert.match(challenge, /^\+ /);
    const json = JSON.parse(Buffer.from(challenge.slice(2), 'base64').toString()) as { status: string };
    assert.equal(json.status, 'invalid_token');
    assert.equal(await w.cmd('AQ=='), '-ERR [AUTH] Authentication failed.');
    w.destroy();
  });

  test('a token service that fails answers [SYS/TEMP], not a failed login', async () => {
    bearerFails = true;
    try {
      const w = await greeted(t.port);
      assert.equal(await w.cmd('AUTH XOAUTH2'), '+ ');
      const r = await w.cmd(b64(`user=alice\x01auth=Bearer ${TOKEN}\x01\x01`));
      assert.match(r, /^-ERR \[SYS\/TEMP\]/);
      w.destroy();
    } finally {
      bearerFails = false;
    }
  });
});

describe('AUTH on an unencrypted remote connection', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      users: { bob: { password: 'builder' } },
      server: { loopbackIsSecure: false, saslMechanisms: ['SCRAM-SHA-256', 'PLAIN', 'LOGIN'] },
    });
  });
  after(() => t.close());

  test('mechanisms that send the password are neither offered nor accepted before TLS', async () => {
    const w = await greeted(t.port);
    await w.cmd('CAPA');
    assert.ok((await w.lines()).includes('SASL SCRAM-SHA-256'));
    assert.match(await w.cmd(`AUTH PLAIN ${b64('\0bob\0builder')}`), /^-ERR Unsupported/);
    assert.match(await exchange(w, 'SCRAM-SHA-256', { username: 'bob', password: 'builder' }), /^\+OK/);
    await w.cmd('QUIT');
  });
});
