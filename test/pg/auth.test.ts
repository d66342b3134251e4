/**
 * Users in PostgreSQL ([auth] driver = "postgres") and the failed-login penalty shared through it, against a
 * real PostgreSQL. Two objects over one database stand for two frontends on two machines.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { verifyApop } from '../../src/auth/apop.ts';
import { PostgresUserDb } from '../../src/auth/postgres.ts';
import { LocalCoordinator } from '../../src/server/coordinator.ts';
import { SharedPenaltyCoordinator } from '../../src/storage/postgres/penalty.ts';
import { migrate } from '../../src/storage/postgres/schema.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();

if (skip) {
  test('PostgreSQL users and penalty', { skip }, () => {});
} else {
  describe('PostgreSQL user database and shared penalty', () => {
    let db: TestPg;
    let poolA: pg.Pool;
    let poolB: pg.Pool;
    before(async () => {
      db = await startTestPg();
      poolA = new pg.Pool({ connectionString: db.url, max: 2 });
      poolB = new pg.Pool({ connectionString: db.url, max: 2 });
      await migrate(poolA);
    });
    after(async () => {
      await poolA?.end();
      await poolB?.end();
      await db?.close();
    });

    test('add, verify, APOP, SCRAM keys, overrides, quota, list, passwd, del', async () => {
      const a = await PostgresUserDb.load(poolA, { quota: { bytes: 1000, messages: 0 } });
      const b = await PostgresUserDb.load(poolB);
      try {
        await a.addUser('alice', 'secret-1', { apopSecret: 'secret-1' });
        await a.addUser('bob', 'bob-pw', { mailboxId: 'bob@example.com', quota: { messages: 7 } });
        await assert.rejects(a.addUser('alice', 'x'), /already exists/);
        await assert.rejects(a.addUser('bad name', 'x'), (e: Error) =>
          /INVALID_NAME/.test((e as { code?: string }).code ?? ''),
        );
        assert.deepEqual(await b.verifyPassword('alice', 'secret-1'), { user: 'alice', mailboxId: 'alice' });
        assert.equal(await b.verifyPassword('alice', 'wrong'), null);
        assert.equal(await b.verifyPassword('nobody', 'secret-1'), null);
        assert.equal(await b.sharedSecret('alice'), 'secret-1');
        assert.equal(await b.sharedSecret('bob'), null);
        await b.reload();
        assert.equal(b.hasSharedSecrets(), true);
        const ts = '<1.2@postern.test>';
        const digest = (await import('node:crypto')).createHash('md5').update(`${ts}secret-1`).digest('hex');
        assert.ok(verifyApop((await b.sharedSecret('alice')) ?? '', ts, digest));
        const scram = await b.scramCredentials('alice');
        assert.ok(scram && scram.iterations >= 4096 && scram.storedKey.length === 32);
        assert.deepEqual(await b.quotaOf('alice'), { bytes: 0, messages: 0 });
        assert.deepEqual(await a.quotaOf('bob'), { bytes: 1000, messages: 7 });
        assert.deepEqual((await a.lookup('bob'))?.settings, { quota: { messages: 7 } });
        await poolA.query("update users set login_delay = 900, expire = '30' where name = 'bob'");
        assert.deepEqual((await b.lookup('bob'))?.settings, {
          loginDelaySeconds: 900,
          expireDays: 30,
          quota: { messages: 7 },
        });
        // A value the server cannot use is ignored (the default applies), not a refused login.
        await poolA.query("update users set expire = 'soon' where name = 'bob'");
        assert.deepEqual((await b.verifyPassword('bob', 'bob-pw'))?.settings, {
          loginDelaySeconds: 900,
          quota: { messages: 7 },
        });
        await poolA.query("update users set expire = '30' where name = 'bob'");

        // A password changed on one frontend is refused at once by another, whose cache saw the old one.
        assert.ok(await b.verifyPassword('alice', 'secret-1'));
        await a.setPassword('alice', 'secret-2');
        assert.equal(await b.verifyPassword('alice', 'secret-1'), null);
        assert.ok(await b.verifyPassword('alice', 'secret-2'));
        assert.equal(await b.sharedSecret('alice'), 'secret-2'); // the APOP secret follows the password
        await a.setPassword('alice', 'secret-3', { apopSecret: null });
        assert.equal(await b.sharedSecret('alice'), null);

        await poolA.query("update users set disabled = true where name = 'bob'");
        assert.equal(await b.verifyPassword('bob', 'bob-pw'), null);
        assert.deepEqual(
          (await a.listUsers()).map((u) => [u.name, u.mailboxId, u.problem]),
          [
            ['alice', 'alice', null],
            ['bob', 'bob@example.com', 'disabled'],
          ],
        );
        await a.deleteUser('bob');
        await assert.rejects(a.deleteUser('bob'), /no user/);
        assert.equal(await b.lookup('bob'), null);
      } finally {
        a.close();
        b.close();
      }
    });

    test('the failed-login penalty is shared by frontends and cleared by a success', async () => {
      const settings = { baseMs: 1000, maxMs: 8000 };
      const nodeA = new SharedPenaltyCoordinator(poolA, new LocalCoordinator(settings), settings);
      const nodeB = new SharedPenaltyCoordinator(poolB, new LocalCoordinator(settings), settings);
      try {
        assert.equal(await nodeB.gate('192.0.2.1', 'carol'), 0);
        assert.equal(await nodeA.fail('192.0.2.1', 'carol'), 1000);
        assert.equal(await nodeA.fail('192.0.2.1', 'carol'), 2000);
        assert.equal(await nodeA.fail('192.0.2.1', 'carol'), 4000);
        // Node B never saw these failures itself, yet gates the next verification from that address...
        const wait = await nodeB.gate('192.0.2.1');
        assert.ok(wait > 3000 && wait <= 4000, `wait ${wait}`);
        // ...and for that user from any address; another address and user are free.
        assert.ok((await nodeB.gate('198.51.100.7', 'carol')) > 3000);
        assert.equal(await nodeB.gate('198.51.100.7', 'dave'), 0);
        // Its own next failure continues the count.
        assert.equal(await nodeB.fail('192.0.2.1'), 8000);
        nodeB.succeed('192.0.2.1', 'carol');
        await new Promise((r) => setTimeout(r, 100));
        assert.equal(await nodeB.gate('198.51.100.7', 'carol'), 0);
        // Node A's local copy still remembers its own failures: the address waits there until it expires.
        assert.ok((await nodeA.gate('192.0.2.1')) > 0);
        // A login with no failure on record costs one statement (the gate), not a delete after the success.
        const pool = poolB as unknown as { query: (...a: unknown[]) => Promise<unknown> };
        const real = pool.query.bind(pool);
        const seen: string[] = [];
        pool.query = (...a: unknown[]) => {
          const q = a[0] as string | { text: string };
          seen.push(typeof q === 'string' ? q : q.text);
          return real(...a);
        };
        try {
          assert.equal(await nodeB.gate('203.0.113.9', 'erin'), 0);
          nodeB.succeed('203.0.113.9', 'erin');
        } finally {
          pool.query = real;
        }
        assert.equal(seen.length, 1, seen.join('\n'));
        assert.match(seen[0], /^select/);
      } finally {
        nodeA.close();
        nodeB.close();
      }
    });
  });
}
