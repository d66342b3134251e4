import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  createOAuthBearerClient,
  createOAuthBearerServer,
  createXOAuth2Client,
  createXOAuth2Server,
} from '../../src/auth/sasl/oauth.ts';
import { SaslError } from '../../src/auth/sasl/types.ts';
import { assertFailure, assertSuccess, b, runExchange, standardVerifier } from './helpers.ts';

// RFC 7628 §4.1: the successful exchange's client message, as base64 in the RFC.
const RFC_TOKEN = 'vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==';
const RFC_41_MESSAGE =
  'bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB';
// RFC 7628 §4.3: the server's error challenge for a failed exchange.
const RFC_43_ERROR =
  'eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3VyYXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWd1cmF0aW9uIn0=';
// Google's XOAUTH2 description, the example initial client response.
const GOOGLE_XOAUTH2 =
  'dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2cBAQ==';

describe('OAUTHBEARER (RFC 7628)', () => {
  it('client: builds the RFC 7628 §4.1 message byte for byte', () => {
    const client = createOAuthBearerClient({
      username: 'user@example.com',
      host: 'server.example.com',
      port: 143,
      token: RFC_TOKEN,
    });
    assert.equal(client.start().toString('base64'), RFC_41_MESSAGE);
  });

  it('server: accepts the RFC 7628 §4.1 message', async () => {
    const server = createOAuthBearerServer(standardVerifier());
    assertSuccess(await server.step(Buffer.from(RFC_41_MESSAGE, 'base64')), 'user@example.com');
  });

  it('server: without an authzid the token names the user', async () => {
    const server = createOAuthBearerServer(standardVerifier());
    assertSuccess(await server.step(b('n,,\x01auth=Bearer tok.tim\x01\x01')), 'tim');
    // The scheme name is case-insensitive (RFC 6750 §2.1).
    assertSuccess(
      await createOAuthBearerServer(standardVerifier()).step(b('n,,\x01auth=bearer tok.tim\x01\x01')),
      'tim',
    );
  });

  it('server: a bad token gets the JSON error challenge, then the final failure after AQ==', async () => {
    const server = createOAuthBearerServer(standardVerifier(), {
      scope: 'example_scope',
      openidConfiguration: 'https://example.com/.well-known/openid-configuration',
    });
    const step = await server.step(b('n,a=tim,\x01auth=Bearer wrong\x01\x01'));
    assertFailure(step);
    assert.ok(step.challenge);
    assert.deepEqual(JSON.parse(step.challenge.toString()), {
      status: 'invalid_token',
      schemes: 'bearer',
      scope: 'example_scope',
      'openid-configuration': 'https://example.com/.well-known/openid-configuration',
    });
    const final = await server.step(Buffer.from('AQ==', 'base64'));
    assertFailure(final);
    assert.equal(final.challenge, undefined);
  });

  it('server: a token for another user than the authzid fails', async () => {
    const step = await createOAuthBearerServer(standardVerifier()).step(b('n,a=user,\x01auth=Bearer tok.tim\x01\x01'));
    assertFailure(step);
  });

  it('client: answers the RFC 7628 §4.3 error challenge with AQ== and reports it', () => {
    const client = createOAuthBearerClient({ username: 'user@example.com', token: RFC_TOKEN });
    client.start();
    assert.equal(client.step(Buffer.from(RFC_43_ERROR, 'base64')).toString('base64'), 'AQ==');
    assert.equal(client.serverError?.status, 'invalid_token');
    assert.equal(client.serverError?.scope, 'example_scope');
    assert.equal(client.serverError?.openidConfiguration, 'https://example.com/.well-known/openid-configuration');
    assert.throws(() => client.step(b('again')), SaslError);
  });

  it('full exchange, good and bad token, with and without initial response', async () => {
    for (const initialResponse of [true, false]) {
      const ok = await runExchange(
        createOAuthBearerClient({ username: 'tim', token: 'tok.tim' }),
        createOAuthBearerServer(standardVerifier()),
        { initialResponse },
      );
      assertSuccess(ok.result, 'tim');
      const bad = await runExchange(
        createOAuthBearerClient({ token: 'nope' }),
        createOAuthBearerServer(standardVerifier()),
        { initialResponse },
      );
      assertFailure(bad.result);
      assert.equal(bad.transcript.at(-2), 'C: AQ==');
    }
  });

  it('fails, never throws, on malformed messages', async () => {
    const cases: Array<[string, string]> = [
      ['channel binding p=', 'p=tls-unique,,\x01auth=Bearer tok.tim\x01\x01'],
      ['no gs2 header', '\x01auth=Bearer tok.tim\x01\x01'],
      ['no auth', 'n,,\x01host=x\x01\x01'],
      ['Basic scheme', 'n,,\x01auth=Basic dXNlcjpwdw==\x01\x01'],
      ['no token', 'n,,\x01auth=Bearer \x01\x01'],
      ['token with a space', 'n,,\x01auth=Bearer tok tim\x01\x01'],
      ['missing final kvsep', 'n,,\x01auth=Bearer tok.tim\x01'],
      ['missing first kvsep', 'n,,auth=Bearer tok.tim\x01\x01'],
      ['duplicate auth', 'n,,\x01auth=Bearer tok.tim\x01auth=Bearer x\x01\x01'],
      ['bad key', 'n,,\x01au th=x\x01auth=Bearer tok.tim\x01\x01'],
      ['control char in value', 'n,,\x01host=a\x00b\x01auth=Bearer tok.tim\x01\x01'],
      ['lone kvsep', '\x01'],
      ['empty', ''],
      ['bad authzid', 'n,a=a/b,\x01auth=Bearer tok.tim\x01\x01'],
    ];
    for (const [what, msg] of cases) {
      const step = await createOAuthBearerServer(standardVerifier()).step(b(msg));
      assert.equal(step.kind, 'failure', what);
      assert.equal(step.kind === 'failure' && step.challenge, undefined, `${what}: no token was judged`);
    }
    assertFailure(await createOAuthBearerServer(standardVerifier()).step(Buffer.alloc(70_000, 0x41)));
  });

  it('client: refuses a malformed token, user, host or port', () => {
    assert.throws(() => createOAuthBearerClient({ token: '' }), SaslError);
    assert.throws(() => createOAuthBearerClient({ token: 'a b' }), SaslError);
    assert.throws(() => createOAuthBearerClient({ token: 'x', username: 'a\x01' }), SaslError);
    assert.throws(() => createOAuthBearerClient({ token: 'x', host: 'a b' }), SaslError);
    assert.throws(() => createOAuthBearerClient({ token: 'x', port: 70000 }), SaslError);
  });
});

describe('XOAUTH2', () => {
  it('client: builds Google’s example message', () => {
    const client = createXOAuth2Client({
      username: 'someuser@example.com',
      token: 'ya29.vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg',
    });
    assert.equal(client.start().toString('base64'), GOOGLE_XOAUTH2);
  });

  it('server: one-line and two-step forms', async () => {
    assertSuccess(
      await createXOAuth2Server(standardVerifier()).step(b('user=tim\x01auth=Bearer tok.tim\x01\x01')),
      'tim',
    );
    const twoStep = createXOAuth2Server(standardVerifier());
    const first = await twoStep.step(null);
    assert.equal(first.kind === 'challenge' && first.data.length, 0);
    assertSuccess(await twoStep.step(b('user=tim\x01auth=Bearer tok.tim\x01\x01')), 'tim');
  });

  it('server: a bad token gets the JSON error challenge, then the failure after an empty answer', async () => {
    const server = createXOAuth2Server(standardVerifier(), { scope: 'https://mail.example.com/' });
    const step = await server.step(b('user=tim\x01auth=Bearer wrong\x01\x01'));
    assertFailure(step);
    assert.deepEqual(JSON.parse(step.challenge?.toString() ?? ''), {
      status: '401',
      schemes: 'bearer',
      scope: 'https://mail.example.com/',
    });
    assertFailure(await server.step(Buffer.alloc(0)));
  });

  it('full exchange: the client answers the error with an empty response', async () => {
    const bad = await runExchange(
      createXOAuth2Client({ username: 'tim', token: 'bad' }),
      createXOAuth2Server(standardVerifier()),
    );
    assertFailure(bad.result);
    assert.equal(bad.transcript.at(-2), 'C: ');
    const good = await runExchange(
      createXOAuth2Client({ username: 'tim', token: 'tok.tim' }),
      createXOAuth2Server(standardVerifier()),
      { initialResponse: false },
    );
    assertSuccess(good.result, 'tim');
  });

  it('fails, never throws, on malformed messages', async () => {
    const cases: Array<[string, string]> = [
      ['no user', 'auth=Bearer tok.tim\x01\x01'],
      ['empty user', 'user=\x01auth=Bearer tok.tim\x01\x01'],
      ['no auth', 'user=tim\x01\x01'],
      ['no final kvsep', 'user=tim\x01auth=Bearer tok.tim\x01'],
      ['token for someone else', 'user=user\x01auth=Bearer tok.tim\x01\x01'],
      ['user with a slash', 'user=../x\x01auth=Bearer tok.tim\x01\x01'],
      ['empty', ''],
    ];
    for (const [what, msg] of cases) {
      assert.equal((await createXOAuth2Server(standardVerifier()).step(b(msg))).kind, 'failure', what);
    }
  });

  it('client: needs a user name', () => {
    assert.throws(() => createXOAuth2Client({ token: 'x' }), SaslError);
  });
});
