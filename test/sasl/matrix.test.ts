/**
 * Every client side against every server side through the registry, good and bad credentials, with and
 * without an initial response; and random input to every server side, which must never throw.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  chooseSaslClient,
  createSaslClient,
  createSaslServer,
  MECHANISM_INFO,
  SASL_MECHANISMS,
  type SaslClientCredentials,
  saslMechanism,
} from '../../src/auth/sasl/index.ts';
import { assertFailure, assertSuccess, runExchange, standardVerifier } from './helpers.ts';

const GOOD: SaslClientCredentials = { username: 'tim', password: 'tanstaaftanstaaf', token: 'tok.tim' };
const BAD: SaslClientCredentials = { username: 'tim', password: 'tanstaaf', token: 'tok.wrong' };

describe('every client against every server', () => {
  for (const mechanism of SASL_MECHANISMS) {
    for (const initialResponse of [true, false]) {
      it(`${mechanism}, ${initialResponse ? 'with' : 'without'} initial response`, async () => {
        const good = await runExchange(
          createSaslClient(mechanism, GOOD)!,
          createSaslServer(mechanism, standardVerifier())!,
          { initialResponse },
        );
        assertSuccess(good.result, 'tim');
        const bad = await runExchange(
          createSaslClient(mechanism, BAD)!,
          createSaslServer(mechanism, standardVerifier())!,
          { initialResponse },
        );
        assertFailure(bad.result);
      });
    }
  }

  it('a client of one mechanism gets nowhere with a server of another', async () => {
    for (const cm of SASL_MECHANISMS) {
      for (const sm of SASL_MECHANISMS) {
        if (cm === sm) continue;
        const client = createSaslClient(cm, GOOD)!;
        const server = createSaslServer(sm, standardVerifier())!;
        let result: string;
        try {
          result = (await runExchange(client, server)).result.kind;
        } catch (err) {
          assert.equal((err as Error).name, 'SaslError', `${cm} vs ${sm}: only the client may throw`);
          result = 'client refused';
        }
        assert.notEqual(result, 'success', `${cm} client vs ${sm} server`);
      }
    }
  });
});

describe('registry', () => {
  it('matches names case-insensitively and knows nothing else', () => {
    assert.equal(saslMechanism('scram-sha-256'), 'SCRAM-SHA-256');
    assert.equal(saslMechanism('GSSAPI'), null);
    assert.equal(createSaslServer('DIGEST-MD5', standardVerifier()), null);
    assert.equal(createSaslClient('DIGEST-MD5', GOOD), null);
  });

  it('creates a client only when the credentials suit the mechanism', () => {
    assert.equal(createSaslClient('PLAIN', { token: 't' }), null);
    assert.equal(createSaslClient('OAUTHBEARER', { username: 'u', password: 'p' }), null);
    assert.equal(createSaslClient('XOAUTH2', { token: 't' }), null);
    assert.equal(createSaslClient('LOGIN', { username: 'u', password: 'p', authzid: 'v' }), null);
  });

  it('chooses the strongest advertised mechanism, and no secret-sending one without TLS', () => {
    const advertised = ['PLAIN', 'LOGIN', 'CRAM-MD5', 'SCRAM-SHA-256', 'XOAUTH2'];
    assert.equal(chooseSaslClient(advertised, GOOD, { secure: true })?.mechanism, 'SCRAM-SHA-256');
    assert.equal(chooseSaslClient(['plain', 'login'], GOOD, { secure: true })?.mechanism, 'PLAIN');
    assert.equal(chooseSaslClient(['PLAIN', 'LOGIN', 'CRAM-MD5'], GOOD, { secure: false })?.mechanism, 'CRAM-MD5');
    assert.equal(chooseSaslClient(['PLAIN', 'LOGIN', 'XOAUTH2'], GOOD, { secure: false }), null);
    assert.equal(
      chooseSaslClient(['XOAUTH2', 'PLAIN'], { username: 'u', token: 't' }, { secure: true })?.mechanism,
      'XOAUTH2',
    );
    for (const m of SASL_MECHANISMS) assert.ok(MECHANISM_INFO[m]);
  });
});

describe('random input never makes a server side throw', () => {
  for (const mechanism of SASL_MECHANISMS) {
    it(mechanism, async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.option(fc.uint8Array({ maxLength: 300 }), { nil: null }),
          fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 3 }),
          async (first, rest) => {
            const server = createSaslServer(mechanism, standardVerifier())!;
            let step = await server.step(first === null ? null : Buffer.from(first));
            for (const r of rest) step = await server.step(Buffer.from(r));
            assert.ok(['challenge', 'failure'].includes(step.kind));
          },
        ),
        { numRuns: 300 },
      );
    });
  }

  it('structured near-misses (fields, separators, escapes) for the kv and comma formats', async () => {
    const piece = fc.constantFrom(
      'n',
      'y',
      'p=x',
      ',',
      '=',
      'a=',
      'n=',
      'r=',
      'c=',
      'p=',
      '\x01',
      '\0',
      'auth=Bearer ',
      'user=',
      'tim',
      '=2C',
      '=3D',
      'biws',
      'AQ==',
    );
    await fc.assert(
      fc.asyncProperty(fc.array(piece, { maxLength: 12 }), fc.constantFrom(...SASL_MECHANISMS), async (parts, m) => {
        const server = createSaslServer(m, standardVerifier())!;
        const step = await server.step(Buffer.from(parts.join('')));
        if (step.kind === 'success') assert.fail(`${m} accepted ${JSON.stringify(parts.join(''))}`);
      }),
      { numRuns: 1000 },
    );
  });
});
