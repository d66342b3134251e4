import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cramMd5Challenge, createCramMd5Client, createCramMd5Server } from '../../src/auth/sasl/cram-md5.ts';
import { SaslError } from '../../src/auth/sasl/types.ts';
import { assertFailure, assertSuccess, b, runExchange, standardVerifier } from './helpers.ts';

// RFC 2195 §2, the example exchange.
const RFC_CHALLENGE = '<1896.697170952@postoffice.reston.mci.net>';
const RFC_RESPONSE = 'tim b913a602c7eda7a495b4e6e7334d3890';

describe('CRAM-MD5 (RFC 2195)', () => {
  it('client: reproduces the RFC 2195 example response', () => {
    const client = createCramMd5Client({ username: 'tim', password: 'tanstaaftanstaaf' });
    assert.equal(client.start(), null);
    assert.equal(client.step(b(RFC_CHALLENGE)).toString(), RFC_RESPONSE);
    assert.equal(client.done, true);
    assert.throws(() => client.step(b(RFC_CHALLENGE)), SaslError);
  });

  it('server: sends the challenge and accepts the RFC 2195 example response', async () => {
    const server = createCramMd5Server(standardVerifier(), { makeChallenge: () => RFC_CHALLENGE });
    assert.deepEqual(await server.step(null), { kind: 'challenge', data: b(RFC_CHALLENGE) });
    assertSuccess(await server.step(b(RFC_RESPONSE)), 'tim');
  });

  it('server: accepts the digest in upper-case hex', async () => {
    const server = createCramMd5Server(standardVerifier(), { makeChallenge: () => RFC_CHALLENGE });
    await server.step(null);
    assertSuccess(await server.step(b(RFC_RESPONSE.toUpperCase().replace('TIM', 'tim'))), 'tim');
  });

  it('makes a fresh msg-id challenge each time', () => {
    const a = cramMd5Challenge('mail.example.org');
    assert.match(a, /^<\d+\.\d+@mail\.example\.org>$/);
    assert.notEqual(a, cramMd5Challenge('mail.example.org'));
    assert.match(cramMd5Challenge('evil>\r\nhost'), /@evilhost>$/);
  });

  it('runs against its own client', async () => {
    const { result } = await runExchange(
      createCramMd5Client({ username: 'user', password: 'pencil' }),
      createCramMd5Server(standardVerifier(), { hostname: 'pop.example.org' }),
    );
    assertSuccess(result, 'user');
  });

  it('fails, never throws, on bad input', async () => {
    const good = RFC_RESPONSE;
    const cases: Array<[string, Buffer]> = [
      ['no space', b('timb913a602c7eda7a495b4e6e7334d3890')],
      ['empty', Buffer.alloc(0)],
      ['short digest', b(good.slice(0, -1))],
      ['non-hex digest', b(`${good.slice(0, -1)}g`)],
      ['empty user', b(' b913a602c7eda7a495b4e6e7334d3890')],
      ['wrong digest', b(`${good.slice(0, -1)}1`)],
      ['unknown user', b('nobody b913a602c7eda7a495b4e6e7334d3890')],
      ['user without a secret', b('nosecret b913a602c7eda7a495b4e6e7334d3890')],
      ['not UTF-8', Buffer.from([0xff, 0x20, 0x41])],
      ['oversize', Buffer.alloc(5000, 0x41)],
    ];
    for (const [what, msg] of cases) {
      const server = createCramMd5Server(standardVerifier(), { makeChallenge: () => RFC_CHALLENGE });
      await server.step(null);
      assert.equal((await server.step(msg)).kind, 'failure', what);
    }
  });

  it('refuses an initial response, even an empty one (server-first mechanism)', async () => {
    assertFailure(await createCramMd5Server(standardVerifier()).step(Buffer.alloc(0)));
    assertFailure(await createCramMd5Server(standardVerifier()).step(b(RFC_RESPONSE)));
  });
});
