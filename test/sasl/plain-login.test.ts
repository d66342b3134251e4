import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createLoginClient, createLoginServer } from '../../src/auth/sasl/login.ts';
import { createPlainClient, createPlainServer } from '../../src/auth/sasl/plain.ts';
import { SaslError } from '../../src/auth/sasl/types.ts';
import { assertFailure, assertSuccess, b, runExchange, standardVerifier } from './helpers.ts';

describe('PLAIN (RFC 4616)', () => {
  it('accepts the RFC 4616 §4 example without an authzid', async () => {
    const server = createPlainServer(standardVerifier());
    assertSuccess(await server.step(b('\0tim\0tanstaaftanstaaf')), 'tim');
  });

  it('refuses the RFC 4616 §4 proxy example (Kurt as Ursel) unless proxy authorization is allowed', async () => {
    const v = standardVerifier();
    const refused = await createPlainServer(v).step(b('Ursel\0Kurt\0xipj3plmq'));
    assertFailure(refused);
    assert.equal(v.calls.length, 0, 'no password hash is spent on a refused authzid');

    const asked: string[] = [];
    const server = createPlainServer(v, {
      allowProxy: (who, as) => {
        asked.push(`${who.user}->${as}`);
        return who.user === 'Kurt';
      },
    });
    const step = await server.step(b('Ursel\0Kurt\0xipj3plmq'));
    assertSuccess(step, 'Ursel');
    assert.equal(step.kind === 'success' && step.authcid, 'Kurt');
    assert.deepEqual(asked, ['Kurt->Ursel']);
  });

  it('treats an authzid equal to the authcid as no authzid', async () => {
    const step = await createPlainServer(standardVerifier()).step(b('tim\0tim\0tanstaaftanstaaf'));
    assertSuccess(step, 'tim');
    assert.equal(step.kind === 'success' && step.authcid, undefined);
  });

  it('refuses a proxy the hook denies, and one to an unknown user', async () => {
    const v = standardVerifier();
    assertFailure(await createPlainServer(v, { allowProxy: () => false }).step(b('Ursel\0Kurt\0xipj3plmq')));
    assertFailure(await createPlainServer(v, { allowProxy: () => true }).step(b('ghost\0Kurt\0xipj3plmq')));
  });

  it('carries UTF-8 names and passwords, and refuses malformed UTF-8', async () => {
    const v = standardVerifier();
    v.users.José = { password: 'pässwörd ☃' };
    assertSuccess(await createPlainServer(v).step(b('\0José\0pässwörd ☃')), 'José');
    const bad = Buffer.concat([b('\0tim\0'), Buffer.from([0xc3, 0x28])]);
    assertFailure(await createPlainServer(v).step(bad));
  });

  it('asks for the message with an empty challenge when there was no initial response', async () => {
    const server = createPlainServer(standardVerifier());
    const first = await server.step(null);
    assert.equal(first.kind, 'challenge');
    assert.equal(first.kind === 'challenge' && first.data.length, 0);
    assertSuccess(await server.step(b('\0tim\0tanstaaftanstaaf')), 'tim');
  });

  it('fails, never throws, on malformed messages', async () => {
    const cases: Array<[string, Buffer]> = [
      ['empty initial response (=)', Buffer.alloc(0)],
      ['one NUL', b('tim\0tanstaaftanstaaf')],
      ['no NUL', b('timtanstaaftanstaaf')],
      ['three NULs', b('\0tim\0tanstaaf\0taaf')],
      ['empty authcid', b('\0\0tanstaaftanstaaf')],
      ['empty password', b('\0tim\0')],
      ['user name with a space', b('\0t im\0tanstaaftanstaaf')],
      ['user name too long', b(`\0${'a'.repeat(256)}\0pw`)],
      ['authzid too long', b(`${'a'.repeat(256)}\0tim\0tanstaaftanstaaf`)],
      ['password too long', b(`\0tim\0${'p'.repeat(1025)}`)],
      ['oversize message', Buffer.alloc(5000, 0x61)],
      ['wrong password', b('\0tim\0tanstaaf')],
      ['unknown user', b('\0nobody\0tanstaaf')],
    ];
    for (const [what, msg] of cases) {
      const step = await createPlainServer(standardVerifier()).step(msg);
      assert.equal(step.kind, 'failure', what);
    }
  });

  it('fails every step after the exchange ended', async () => {
    const server = createPlainServer(standardVerifier());
    assertSuccess(await server.step(b('\0tim\0tanstaaftanstaaf')), 'tim');
    assertFailure(await server.step(b('\0tim\0tanstaaftanstaaf')));
    const failed = createPlainServer(standardVerifier());
    assertFailure(await failed.step(b('\0tim\0wrong')));
    assertFailure(await failed.step(b('\0tim\0tanstaaftanstaaf')));
  });

  it('client: builds the RFC 4616 messages and refuses what PLAIN cannot carry', () => {
    assert.deepEqual(
      createPlainClient({ username: 'tim', password: 'tanstaaftanstaaf' }).start(),
      b('\0tim\0tanstaaftanstaaf'),
    );
    assert.deepEqual(
      createPlainClient({ username: 'Kurt', password: 'xipj3plmq', authzid: 'Ursel' }).start(),
      b('Ursel\0Kurt\0xipj3plmq'),
    );
    assert.throws(() => createPlainClient({ username: 'a\0b', password: 'x' }), SaslError);
    assert.throws(() => createPlainClient({ username: '', password: 'x' }), SaslError);
    assert.throws(() => createPlainClient({ username: 'a', password: '' }), SaslError);
    const c = createPlainClient({ username: 'tim', password: 'p' });
    assert.throws(() => c.step(b('unexpected')), SaslError);
  });

  it('client: answers an empty challenge with the message when it was not sent inline', async () => {
    const client = createPlainClient({ username: 'tim', password: 'tanstaaftanstaaf' });
    const { result, transcript } = await runExchange(client, createPlainServer(standardVerifier()), {
      initialResponse: false,
    });
    assertSuccess(result, 'tim');
    assert.deepEqual(transcript, ['S: + ', 'C: AHRpbQB0YW5zdGFhZnRhbnN0YWFm', 'S: +OK']);
  });
});

describe('LOGIN', () => {
  it('asks Username: then Password:', async () => {
    const server = createLoginServer(standardVerifier());
    assert.deepEqual(await server.step(null), { kind: 'challenge', data: b('Username:') });
    assert.deepEqual(await server.step(b('tim')), { kind: 'challenge', data: b('Password:') });
    assertSuccess(await server.step(b('tanstaaftanstaaf')), 'tim');
  });

  it('takes the user name as initial response, and treats an empty one as none', async () => {
    const server = createLoginServer(standardVerifier());
    assert.deepEqual(await server.step(b('tim')), { kind: 'challenge', data: b('Password:') });
    assertSuccess(await server.step(b('tanstaaftanstaaf')), 'tim');
    const empty = createLoginServer(standardVerifier());
    assert.deepEqual(await empty.step(Buffer.alloc(0)), { kind: 'challenge', data: b('Username:') });
  });

  it('fails, never throws, on bad input', async () => {
    const cases: Array<[string, Buffer[]]> = [
      ['empty user name', [Buffer.alloc(0)]],
      ['user name not UTF-8', [Buffer.from([0xff, 0xfe])]],
      ['user name too long', [Buffer.alloc(256, 0x61)]],
      ['user name with NUL', [b('ti\0m')]],
      ['empty password', [b('tim'), Buffer.alloc(0)]],
      ['password too long', [b('tim'), Buffer.alloc(1025, 0x61)]],
      ['password not UTF-8', [b('tim'), Buffer.from([0xc0, 0x80])]],
      ['wrong password', [b('tim'), b('nope')]],
    ];
    for (const [what, answers] of cases) {
      const server = createLoginServer(standardVerifier());
      await server.step(null);
      let last = await server.step(answers[0]);
      for (const a of answers.slice(1)) last = await server.step(a);
      assert.equal(last.kind, 'failure', what);
    }
  });

  it('client: answers by the prompt wording, else by position', () => {
    const c = createLoginClient({ username: 'tim', password: 'pw' });
    assert.equal(c.start(), null);
    assert.deepEqual(c.step(b('Password:')), b('pw'));
    assert.equal(c.done, true);
    assert.throws(() => c.step(b('Username:')), SaslError);

    const p = createLoginClient({ username: 'tim', password: 'pw' });
    assert.deepEqual(p.step(b('VXNlcm5hbWU6')), b('tim'));
    assert.deepEqual(p.step(b('UGFzc3dvcmQ6')), b('pw'));
    assert.throws(() => p.step(b('?')), SaslError);
  });
});
