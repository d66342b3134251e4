/**
 * The failed-login penalty gates the next verification (issue 13 #2): an attacker who hangs up as soon as no
 * answer comes at once gets no more guesses than one who waits, for USER/PASS, APOP and every SASL mechanism
 * that checks a credential; the penalty holds per address and per user; a right password from a penalised
 * address waits as a wrong one would; and a USER pipelined with its PASS is answered at once.
 *
 * Clients come from many addresses through a trusted PROXY header, as behind a load balancer.
 */
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Pop3Server } from '../../src/server/server.ts';
import { defaultLimits, makeServer, TestAuthenticator } from '../helpers/server.ts';
import { Wire } from '../helpers/wire.ts';

const PENALTY_MS = 400;
/** How long a "dropping" attacker waits for an answer before hanging up and trying again. */
const PATIENCE_MS = 30;
const ATTACK_MS = 1_600;
const b64 = (s: string) => Buffer.from(s).toString('base64');

/** Failed verifications (guesses that were checked), by mechanism, from the server's onLogin hook. */
const guessesChecked = new Map<string, number>();
const USERS = ['pass', 'apop', 'plain', 'login', 'cram', 'scram', 'oauth', 'xoauth', 'victim', 'alice'];
let server: Pop3Server;
let port: number;
before(async () => {
  server = await makeServer({
    authenticator: new TestAuthenticator(
      Object.fromEntries(USERS.map((u) => [u, { password: `${u}-pw`, secret: `${u}-pw` }])),
    ),
    // A token check that knows no token: every OAuth guess is a failed verification.
    bearer: { verifyBearer: async () => null },
    hooks: {
      onLogin(mechanism, result) {
        if (result === 'fail') guessesChecked.set(mechanism, (guessesChecked.get(mechanism) ?? 0) + 1);
      },
    },
    allowPlaintextAuth: true,
    limits: {
      ...defaultLimits,
      failedLoginDelayMs: PENALTY_MS,
      failedLoginMaxDelayMs: PENALTY_MS,
      maxAuthFailures: 1000,
    },
    proxy: { trusted: ['127.0.0.0/8'], timeoutMs: 1000 },
  });
  [{ port }] = await server.listen([{ address: '127.0.0.1', port: 0, tls: 'none', proxyProtocol: true }]);
});
after(() => server.close(0));

/** A connection that says it comes from `address`; resolves after the greeting. */
async function from(address: string): Promise<{ w: Wire; greeting: string }> {
  const w = await Wire.connect(port);
  w.send(`PROXY TCP4 ${address} 127.0.0.1 4000 110\r\n`);
  return { w, greeting: await w.line() };
}

/** The next line within the attacker's patience, or null (the attacker then hangs up). */
async function quick(w: Wire): Promise<string | null> {
  return w.line(PATIENCE_MS).catch(() => null);
}

/** One guess of each kind; each hangs up as soon as an answer does not come at once. */
const guesses: Record<string, (w: Wire, greeting: string, user: string) => Promise<void>> = {
  async USER(w, _g, user) {
    w.send(`USER ${user}\r\nPASS wrong\r\n`);
    await quick(w);
    await quick(w);
  },
  async APOP(w, greeting, user) {
    const ts = /<[^>]+>/.exec(greeting)?.[0] ?? '';
    w.send(`APOP ${user} ${createHash('md5').update(`${ts}wrong`).digest('hex')}\r\n`);
    await quick(w);
  },
  async PLAIN(w, _g, user) {
    w.send(`AUTH PLAIN ${b64(`\0${user}\0wrong`)}\r\n`);
    await quick(w);
  },
  async LOGIN(w, _g, user) {
    w.send(`AUTH LOGIN\r\n${b64(user)}\r\n${b64('wrong')}\r\n`);
    for (let i = 0; i < 3; i++) if ((await quick(w)) === null) return;
  },
  async 'CRAM-MD5'(w, _g, user) {
    w.send('AUTH CRAM-MD5\r\n');
    const challenge = await quick(w);
    if (!challenge?.startsWith('+ ')) return;
    const digest = createHmac('md5', 'wrong')
      .update(Buffer.from(challenge.slice(2), 'base64'))
      .digest('hex');
    w.send(`${b64(`${user} ${digest}`)}\r\n`);
    await quick(w);
  },
  async 'SCRAM-SHA-256'(w, _g, user) {
    w.send(`AUTH SCRAM-SHA-256 ${b64(`n,,n=${user},r=abcdefgh`)}\r\n`);
    const first = await quick(w);
    if (!first?.startsWith('+ ')) return;
    const nonce = /r=([^,]+)/.exec(Buffer.from(first.slice(2), 'base64').toString())?.[1];
    w.send(`${b64(`c=biws,r=${nonce},p=${Buffer.alloc(32).toString('base64')}`)}\r\n`);
    await quick(w);
  },
  async OAUTHBEARER(w, _g, user) {
    w.send(`AUTH OAUTHBEARER ${b64(`n,a=${user},\x01auth=Bearer guess\x01\x01`)}\r\n`);
    await quick(w);
  },
  async XOAUTH2(w, _g, user) {
    w.send(`AUTH XOAUTH2 ${b64(`user=${user}\x01auth=Bearer guess\x01\x01`)}\r\n`);
    await quick(w);
  },
};

/** Guesses as fast as hanging up allows, for `ms`, from `address` (or a new address each time). */
async function attack(kind: string, user: string, address: (i: number) => string, ms = ATTACK_MS): Promise<number> {
  const end = Date.now() + ms;
  let tries = 0;
  while (Date.now() < end) {
    const { w, greeting } = await from(address(tries));
    await guesses[kind](w, greeting, user);
    w.destroy();
    tries++;
  }
  return tries;
}

describe('the failed-login penalty gates the next verification', () => {
  test('a dropping attacker gets one guess per penalty, for USER/PASS, APOP and every SASL mechanism', async () => {
    const kinds: Array<[string, string]> = [
      ['USER', 'pass'],
      ['APOP', 'apop'],
      ['PLAIN', 'plain'],
      ['LOGIN', 'login'],
      ['CRAM-MD5', 'cram'],
      ['SCRAM-SHA-256', 'scram'],
      ['OAUTHBEARER', 'oauth'],
      ['XOAUTH2', 'xoauth'],
    ];
    // Each from its own address, all at once.
    guessesChecked.clear();
    const tries = await Promise.all(kinds.map(([kind, user], i) => attack(kind, user, () => `198.51.100.${i + 1}`)));
    const bound = Math.ceil(ATTACK_MS / PENALTY_MS) + 1;
    for (const [i, [kind]] of kinds.entries()) {
      const checks = guessesChecked.get(kind) ?? 0;
      assert.ok(tries[i] > bound, `${kind}: the attacker tried only ${tries[i]} times; the test proves nothing`);
      assert.ok(checks <= bound, `${kind}: ${checks} credential checks in ${ATTACK_MS} ms (at most ${bound})`);
      assert.ok(checks >= 2, `${kind}: ${checks} checks: the gate must open again after the penalty`);
    }
  });

  test('the penalty holds per user: fresh addresses do not reset it', async () => {
    guessesChecked.clear();
    let n = 0;
    await attack('USER', 'victim', () => `203.0.113.${(n++ % 250) + 1}`);
    const checks = guessesChecked.get('USER') ?? 0;
    assert.ok(checks <= Math.ceil(ATTACK_MS / PENALTY_MS) + 1, `${checks} checks of one user from ${n} addresses`);
  });

  test('a right password from a penalised address waits too; a pipelined USER is answered at once', async () => {
    const address = '192.0.2.77';
    const { w: bad } = await from(address);
    assert.match(await bad.cmd('USER alice'), /^\+OK/);
    bad.send('PASS wrong\r\n');
    await sleep(50); // the failure is recorded at once; the -ERR comes after the delay
    bad.destroy();
    const { w } = await from(address);
    const t0 = Date.now();
    w.send('USER alice\r\nPASS alice-pw\r\n');
    assert.match(await w.line(), /^\+OK/);
    const userAnswered = Date.now() - t0;
    assert.match(await w.line(), /^\+OK Logged in/);
    const passAnswered = Date.now() - t0;
    assert.ok(
      userAnswered + PENALTY_MS / 2 <= passAnswered,
      `USER answered after ${userAnswered} ms, PASS after ${passAnswered} ms: USER must not wait for PASS`,
    );
    assert.ok(passAnswered >= PENALTY_MS - 100, `a right password answered after ${passAnswered} ms`);
    await w.cmd('QUIT');
  });

  test('a client that waits for every answer gets no more than one guess per penalty either', async () => {
    const { w } = await from('192.0.2.90');
    const end = Date.now() + ATTACK_MS;
    let n = 0;
    for (; Date.now() < end; n++) {
      await w.cmd('USER nobody');
      assert.match(await w.cmd('PASS wrong'), /^-ERR \[AUTH\]/);
    }
    assert.ok(n <= Math.ceil(ATTACK_MS / PENALTY_MS) + 1, `${n} guesses`);
    w.destroy();
  });
});
