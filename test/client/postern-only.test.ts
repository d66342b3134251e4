/** The client's OAUTHBEARER and XOAUTH2 against our server with a token check (Dovecot would need an OAuth passdb). */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Pop3Client } from '../../src/client/index.ts';
import { startTestServer, type TestServer, testCert } from '../helpers/server.ts';

describe('client OAuth mechanisms against Postern', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({
      users: { alice: { password: 'wonderland' } },
      server: {
        bearer: {
          async verifyBearer(token, user) {
            return token === 'tok-123' && (user === undefined || user === 'alice')
              ? { user: 'alice', mailboxId: 'alice' }
              : null;
          },
        },
      },
    });
    t.store.add('alice', 'Subject: hi\r\n\r\nhello\r\n');
  });
  after(() => t.close());

  for (const mechanism of ['OAUTHBEARER', 'XOAUTH2'] as const) {
    test(`${mechanism}: a good token logs in, a bad one is an auth error`, async () => {
      const { cert } = await testCert();
      const base = {
        host: '127.0.0.1',
        port: t.tlsPort,
        tls: 'implicit' as const,
        tlsOptions: { ca: cert, servername: 'localhost' },
      };
      const c = await Pop3Client.connect({ ...base, auth: { user: 'alice', accessToken: 'tok-123', mechanism } });
      assert.equal(c.mechanism, mechanism);
      assert.deepEqual(await c.stat(), { count: 1, size: 22 });
      await c.quit();
      await assert.rejects(
        Pop3Client.connect({ ...base, auth: { user: 'alice', accessToken: 'wrong', mechanism } }),
        (e: Error & { code?: string }) => e.code === 'POP3_ERR_AUTH',
      );
    });
  }
});

describe('client utf8() against Postern', () => {
  test('UTF8 before login, then a UTF-8 user name and password (SCRAM and USER)', async () => {
    const t = await startTestServer({ users: { jürgen: { password: 'pässwörd ✓' } } });
    try {
      const { cert } = await testCert();
      for (const mechanism of ['SCRAM-SHA-256', 'USER'] as const) {
        const c = await Pop3Client.connect({
          host: '127.0.0.1',
          port: t.tlsPort,
          tls: 'implicit',
          tlsOptions: { ca: cert, servername: 'localhost' },
        });
        assert.ok(c.capabilities.has('UTF8'));
        await c.utf8();
        await c.login({ user: 'jürgen', password: 'pässwörd ✓', mechanism });
        assert.equal(c.mechanism, mechanism);
        assert.deepEqual(await c.stat(), { count: 0, size: 0 });
        await c.quit();
      }
    } finally {
      await t.close();
    }
  });
});
