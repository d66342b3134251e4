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
