import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createScramSha256Server,
  encodeScramCredentials,
  makeScramCredentials,
  parseScramCredentials,
} from '../../src/auth/sasl/scram.ts';
import { createScramSha256Client } from '../../src/auth/sasl/scram-client.ts';
import { SaslError, SaslErrorCode, type ServerStep } from '../../src/auth/sasl/types.ts';
import { assertFailure, assertSuccess, b, runExchange, standardVerifier } from './helpers.ts';

// RFC 7677 §3, the example exchange (user "user", password "pencil").
const C_NONCE = 'rOprNGfwEbeRWgbNEkqO';
const S_NONCE = '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0';
const CLIENT_FIRST = 'n,,n=user,r=rOprNGfwEbeRWgbNEkqO';
const SERVER_FIRST = 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096';
const CLIENT_FINAL =
  'c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=';
const SERVER_FINAL = 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=';

const rfcServer = (opts: Parameters<typeof createScramSha256Server>[1] = {}) =>
  createScramSha256Server(standardVerifier(), { makeNonce: () => S_NONCE, ...opts });

function challengeText(step: ServerStep): string {
  assert.equal(step.kind, 'challenge', step.kind === 'failure' ? step.reason : '');
  return step.kind === 'challenge' ? step.data.toString() : '';
}

describe('SCRAM-SHA-256 (RFC 5802, RFC 7677)', () => {
  it('client: produces the RFC 7677 messages and verifies the server signature', () => {
    const client = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    assert.equal(client.start().toString(), CLIENT_FIRST);
    assert.equal(client.step(b(SERVER_FIRST)).toString(), CLIENT_FINAL);
    assert.equal(client.done, false);
    assert.deepEqual(client.step(b(SERVER_FINAL)), Buffer.alloc(0));
    assert.equal(client.done, true);
    client.finish();
  });

  it('server: answers the RFC 7677 messages with its server-first and server-final', async () => {
    const server = rfcServer();
    assert.equal(challengeText(await server.step(b(CLIENT_FIRST))), SERVER_FIRST);
    const done = await server.step(b(CLIENT_FINAL));
    assertSuccess(done, 'user');
    assert.equal(done.kind === 'success' && done.data?.toString(), SERVER_FINAL);
  });

  it('stores the RFC 7677 keys in Dovecot form and reads them back', () => {
    const creds = makeScramCredentials('pencil', { salt: Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64') });
    const encoded = encodeScramCredentials(creds);
    assert.match(encoded, /^\{SCRAM-SHA-256\}4096,W22ZaJ0SNY7soEsUEjb6gQ==,[A-Za-z0-9+/]{43}=,[A-Za-z0-9+/]{43}=$/);
    assert.deepEqual(parseScramCredentials(encoded), creds);
    assert.deepEqual(parseScramCredentials(encoded.slice('{SCRAM-SHA-256}'.length)), creds);
    for (const bad of ['', '{SCRAM-SHA-256}', '4096,a,b,c', encoded.replace('4096', '0'), `${encoded},x`]) {
      assert.equal(parseScramCredentials(bad), null, bad);
    }
    assert.throws(() => makeScramCredentials('pencil', { iterations: 1000 }), RangeError);
    assert.throws(() => makeScramCredentials('bell\u0007'), RangeError);
    assert.notDeepEqual(makeScramCredentials('pencil').salt, makeScramCredentials('pencil').salt);
  });

  it('prepares the password with SASLprep on both sides', async () => {
    const v = standardVerifier();
    v.users.sp = { scram: makeScramCredentials('I\u00ADX') }; // soft hyphen is mapped to nothing
    const { result } = await runExchange(
      createScramSha256Client({ username: 'sp', password: 'IX' }),
      createScramSha256Server(v),
    );
    assertSuccess(result, 'sp');
  });

  it('escapes , and = in names (saslname) and carries an authzid', async () => {
    const v = standardVerifier();
    v.users['a=b'] = { scram: makeScramCredentials('pw-of-a=b') };
    const client = createScramSha256Client({ username: 'a=b', password: 'pw-of-a=b', authzid: 'tim' });
    assert.match(client.start().toString(), /^n,a=tim,n=a=3Db,r=/);
    const refused = await runExchange(
      createScramSha256Client({ username: 'a=b', password: 'pw-of-a=b', authzid: 'tim' }),
      createScramSha256Server(v),
    );
    assertFailure(refused.result);
    const allowed = await runExchange(client, createScramSha256Server(v, { allowProxy: () => true }));
    assertSuccess(allowed.result, 'tim');
  });

  it('answers an unknown user like a known one, with a stable salt, and fails at the proof', async () => {
    const key = Buffer.alloc(32, 7);
    const first = async () => {
      const server = createScramSha256Server(standardVerifier(), { fakeSaltKey: key });
      return { server, text: challengeText(await server.step(b('n,,n=ghost,r=abc'))) };
    };
    const a = await first();
    const c = await first();
    // The iteration count real users' keys are written with (SCRAM_DEFAULT_ITERATIONS), 16-byte salt like theirs.
    assert.match(a.text, /^r=abc[^,]+,s=[A-Za-z0-9+/]{22}==,i=10000$/);
    assert.equal(a.text.split(',')[1], c.text.split(',')[1], 'same salt for the same unknown name');
    const { result } = await runExchange(
      createScramSha256Client({ username: 'ghost', password: 'guess' }),
      createScramSha256Server(standardVerifier()),
    );
    assertFailure(result);
  });

  it('fails, never throws, on bad client-first messages', async () => {
    const cases: Array<[string, string]> = [
      ['channel binding requested (p=)', 'p=tls-unique,,n=user,r=abc'],
      ['bad gs2 flag', 'x,,n=user,r=abc'],
      ['no gs2 header', 'n=user,r=abc'],
      ['mandatory extension', 'n,,m=ext,n=user,r=abc'],
      ['empty user', 'n,,n=,r=abc'],
      ['bad saslname escape', 'n,,n=us=41er,r=abc'],
      ['no nonce', 'n,,n=user'],
      ['nonce with a comma-free but invalid char', 'n,,n=user,r=ab\u0001c'],
      ['attributes out of order', 'n,,r=abc,n=user'],
      ['authzid mismatch', 'n,a=tim,n=user,r=abc'],
      ['empty authzid value', 'n,a=,n=user,r=abc'],
      ['empty message', ''],
    ];
    for (const [what, msg] of cases) {
      assert.equal((await rfcServer().step(b(msg))).kind, 'failure', what);
    }
    assertFailure(await rfcServer().step(Buffer.alloc(5000, 0x61)));
    assertFailure(await rfcServer().step(Buffer.from([0x6e, 0x2c, 0x2c, 0xff])));
  });

  it('accepts the y flag (client could bind, server offers no -PLUS)', async () => {
    const server = rfcServer();
    challengeText(await server.step(b('y,,n=user,r=rOprNGfwEbeRWgbNEkqO')));
    // The client must then echo "y,," in c=; RFC 7677's final (c=biws, i.e. "n,,") no longer matches.
    assertFailure(await server.step(b(CLIENT_FINAL)));
  });

  it('fails, never throws, on bad client-final messages', async () => {
    const cases: Array<[string, string]> = [
      ['wrong proof', CLIENT_FINAL.replace('p=dHzb', 'p=dHzc')],
      ['wrong nonce', CLIENT_FINAL.replace('hNlF$k0', 'hNlF$k1')],
      ['client nonce only', CLIENT_FINAL.replace(S_NONCE, '')],
      ['channel binding data differs (c=eSws is "y,,")', CLIENT_FINAL.replace('c=biws', 'c=eSws')],
      ['c= not base64', CLIENT_FINAL.replace('c=biws', 'c=b!ws')],
      ['no proof', CLIENT_FINAL.slice(0, CLIENT_FINAL.indexOf(',p='))],
      ['short proof', CLIENT_FINAL.replace(/p=.*$/, 'p=AAAA')],
      ['proof not base64', CLIENT_FINAL.replace(/p=.*$/, 'p=####')],
      ['missing c=', CLIENT_FINAL.replace('c=biws,', '')],
      ['empty', ''],
    ];
    for (const [what, msg] of cases) {
      const server = rfcServer();
      challengeText(await server.step(b(CLIENT_FIRST)));
      assert.equal((await server.step(b(msg))).kind, 'failure', what);
    }
  });

  it('refuses a wrong password after a normal-looking exchange', async () => {
    const { result, transcript } = await runExchange(
      createScramSha256Client({ username: 'user', password: 'crayon' }),
      createScramSha256Server(standardVerifier()),
    );
    assertFailure(result);
    assert.equal(transcript.length, 4, 'client-first, server-first, client-final, -ERR');
  });

  it('client: refuses bad server-first messages', () => {
    const bad = [
      ['nonce does not extend ours', 'r=XXXXNGfwEbeRWgbNEkqO%hvY,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096'],
      ['nonce is only ours', `r=${C_NONCE},s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096`],
      ['too few iterations', SERVER_FIRST.replace('i=4096', 'i=4095')],
      ['too many iterations', SERVER_FIRST.replace('i=4096', 'i=99999999')],
      ['iterations not a number', SERVER_FIRST.replace('i=4096', 'i=4k')],
      ['salt not base64', SERVER_FIRST.replace('s=W22', 's=!22')],
      ['mandatory extension', `m=x,${SERVER_FIRST}`],
      ['missing salt', `r=${C_NONCE}${S_NONCE},i=4096`],
    ];
    for (const [what, msg] of bad) {
      const client = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
      client.start();
      assert.throws(() => client.step(b(msg)), { name: 'SaslError', code: SaslErrorCode.BadChallenge }, what);
    }
    const e = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    e.start();
    assert.throws(() => e.step(b('e=unknown-user')), { code: SaslErrorCode.ServerError });
  });

  it('client: refuses a wrong server signature and a success without one', () => {
    const wrong = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    wrong.start();
    wrong.step(b(SERVER_FIRST));
    assert.throws(() => wrong.step(b('v=AAAATRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=')), {
      code: SaslErrorCode.ServerNotVerified,
    });

    const silent = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    silent.start();
    silent.step(b(SERVER_FIRST));
    assert.throws(() => silent.finish(), { code: SaslErrorCode.ServerNotVerified });

    const early = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    early.start();
    assert.throws(() => early.finish(), { code: SaslErrorCode.ServerNotVerified });

    const viaFinish = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    viaFinish.start();
    viaFinish.step(b(SERVER_FIRST));
    viaFinish.finish(b(SERVER_FINAL));
    assert.equal(viaFinish.done, true);

    const serverError = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    serverError.start();
    serverError.step(b(SERVER_FIRST));
    assert.throws(() => serverError.step(b('e=invalid-proof')), { code: SaslErrorCode.ServerError });
  });

  it('client: resends client-first on an empty challenge, and refuses bad credentials', () => {
    const client = createScramSha256Client({ username: 'user', password: 'pencil', nonce: C_NONCE });
    assert.equal(client.step(Buffer.alloc(0)).toString(), CLIENT_FIRST);
    assert.throws(() => createScramSha256Client({ username: '', password: 'x' }), SaslError);
    assert.throws(() => createScramSha256Client({ username: 'a\0', password: 'x' }), SaslError);
    assert.throws(() => createScramSha256Client({ username: 'a', password: 'x\u0000' }), SaslError);
    assert.throws(() => createScramSha256Client({ username: 'a', password: 'x', nonce: 'a,b' }), SaslError);
  });

  it('server: asks for client-first with an empty challenge, and ignores a second attempt', async () => {
    const server = rfcServer();
    assert.equal(challengeText(await server.step(null)), '');
    assert.equal(challengeText(await server.step(b(CLIENT_FIRST))), SERVER_FIRST);
    assertSuccess(await server.step(b(CLIENT_FINAL)), 'user');
    assertFailure(await server.step(b(CLIENT_FINAL)));
  });
});
