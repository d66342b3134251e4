/**
 * The PostgreSQL store against a real PostgreSQL (test/pg/cluster.ts): the shared conformance suite,
 * unchanged, then what only this store has: schema versions, leases across store instances (as across
 * machines), quota in the delivery transaction, chunked bodies, and a database that goes away.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { CopyRead } from '../../src/storage/postgres/copy-read.ts';
import { unescapeBytea } from '../../src/storage/postgres/maildrop.ts';
import { createPgPool } from '../../src/storage/postgres/pool.ts';
import { migrate, SCHEMA_VERSION, schemaVersion } from '../../src/storage/postgres/schema.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';
import { QuotaExceededError } from '../../src/storage/types.ts';
import { pgSkipReason, startTestPg, type TestPg } from '../pg/cluster.ts';
import { holdReleases } from '../pg/hold-releases.ts';
import { deliverBytes, rejectsWith, runConformance } from './conformance.ts';

const skip = pgSkipReason();

/** Counts the statements the store sends (every pool.query) until restore(). */
function countStatements(store: PostgresStore): { n: number; restore(): void } {
  const pool = store.pool as unknown as { query: (...a: unknown[]) => Promise<unknown> };
  const real = pool.query.bind(pool);
  const counted = {
    n: 0,
    restore: () => {
      pool.query = real;
    },
  };
  pool.query = (...a: unknown[]) => {
    counted.n++;
    return real(...a);
  };
  return counted;
}
let db: TestPg;

if (skip) {
  test('PostgreSQL store', { skip }, () => {});
} else {
  before(async () => {
    db = await startTestPg();
    const pool = new pg.Pool({ connectionString: db.url });
    await migrate(pool);
    await pool.end();
  });
  after(async () => {
    await db?.close();
  });

  /** Every conformance test gets fresh mailboxes: the tables are emptied between tests. */
  const fresh = async () => {
    const store = new PostgresStore({ url: db.url, poolSize: 4, chunkSize: 64 * 1024 });
    await store.pool.query('truncate mailboxes, messages, message_chunks, maildrop_leases');
    return { store, cleanup: async () => {} };
  };
  runConformance('postgres', fresh);

  describe('postgres store: schema', () => {
    test('migrate is idempotent; the store refuses a missing or newer schema', async () => {
      const pool = new pg.Pool({ connectionString: db.url });
      try {
        assert.deepEqual(await migrate(pool), { from: SCHEMA_VERSION, to: SCHEMA_VERSION });
        assert.equal(await schemaVersion(pool), SCHEMA_VERSION);
        // Leases are not WAL-logged; bodies are compressed with LZ4 (this PostgreSQL has it).
        const leases = await pool.query("select relpersistence from pg_class where relname = 'maildrop_leases'");
        assert.equal(leases.rows[0].relpersistence, 'u');
        const body = await pool.query(
          "select attcompression from pg_attribute where attrelid = 'message_chunks'::regclass and attname = 'data'",
        );
        assert.equal(body.rows[0].attcompression, 'l');
        const store = await PostgresStore.open({ url: db.url });
        await store.close();
        await pool.query('update postern_schema set version = version + 1');
        await assert.rejects(PostgresStore.open({ url: db.url }), /newer than this Postern/);
        await pool.query('update postern_schema set version = version - 1');
        const empty = await db.newDatabase();
        await assert.rejects(PostgresStore.open({ url: empty }), /schema is missing.*postern db migrate/);
      } finally {
        await pool.end();
      }
    });
  });

  describe('postgres store: leases, quota, bodies, failures', () => {
    test('the lock holds across store instances (as across machines) and is taken over after expiry', async () => {
      const { store: a } = await fresh();
      const b = new PostgresStore({ url: db.url, leaseMs: 1000 });
      try {
        const held = await b.openMaildrop('alice');
        await rejectsWith(a.openMaildrop('alice'), 'inuse');
        // The holder renews while it lives: still locked after several lease lengths.
        await new Promise((r) => setTimeout(r, 2500));
        await rejectsWith(a.openMaildrop('alice'), 'inuse');
        await held.release();
        const mine = await a.openMaildrop('alice');
        await mine.release();
        // A holder that stops renewing (its process died) loses the lease at expiry.
        const dead = new PostgresStore({ url: db.url, leaseMs: 1000 });
        await dead.openMaildrop('bob');
        await dead.pool.end(); // no renewals, no release: as kill -9
        await rejectsWith(a.openMaildrop('bob'), 'inuse');
        await new Promise((r) => setTimeout(r, 1300));
        const taken = await a.openMaildrop('bob');
        await taken.release();
      } finally {
        await a.close();
        await b.close();
      }
    });

    test('a holder whose lease expired and was taken over commits nothing', async () => {
      const { store } = await fresh();
      const slow = new PostgresStore({ url: db.url, leaseMs: 1000 });
      try {
        const m = await deliverBytes(store, 'carol', 'Subject: keep\r\n\r\nkeep\r\n');
        const d = await slow.openMaildrop('carol');
        // Simulate the database being unreachable past the expiry: the lease runs out unrenewed.
        await store.pool.query("update maildrop_leases set expires_at = now() - interval '1 second'");
        const other = await store.openMaildrop('carol');
        await rejectsWith(d.commit([m.id]), 'temp');
        await d.release();
        await rejectsWith(store.openMaildrop('carol'), 'inuse'); // the new holder's lease was not dropped
        await other.release();
        assert.equal((await store.stats('carol')).messages, 1);
      } finally {
        await store.close();
        await slow.close();
      }
    });

    test('a login while this process is still releasing the mailbox takes the lease over (no [IN-USE])', async () => {
      const { store } = await fresh();
      const other = new PostgresStore({ url: db.url });
      try {
        await deliverBytes(store, 'quick', 'Subject: q\r\n\r\nq\r\n');
        const d = await store.openMaildrop('quick');
        const letGo = holdReleases(store);
        const released = d.release();
        await letGo.held;
        // The connection broke and the client is back at once: served, although the old lease row is there.
        const again = await store.openMaildrop('quick');
        assert.equal(again.messages.length, 1);
        // Another process still finds it locked, and the old release, once sent, leaves the new lease alone.
        await rejectsWith(other.openMaildrop('quick'), 'inuse');
        letGo();
        await released;
        await rejectsWith(other.openMaildrop('quick'), 'inuse');
        await again.release();
        const free = await other.openMaildrop('quick');
        await free.release();
      } finally {
        await store.close();
        await other.close();
      }
    });

    test('logins and releases arriving together go in one round trip, each answered with its own rows', async () => {
      const { store } = await fresh();
      const other = new PostgresStore({ url: db.url });
      try {
        const boxes = Array.from({ length: 12 }, (_, i) => `batch${i}`);
        for (const [i, b] of boxes.entries()) {
          for (let k = 0; k <= i; k++) await deliverBytes(store, b, `Subject: ${b} ${k}\r\n\r\n${k}\r\n`);
        }
        const counted = countStatements(store);
        // Twelve sessions log in at once (as in one turn of the event loop under load): one batch.
        const drops = await Promise.all(boxes.map((b) => store.openMaildrop(b)));
        assert.equal(counted.n, 1, `${counted.n} round trips for 12 logins`);
        for (const [i, d] of drops.entries()) {
          assert.equal(d.messages.length, i + 1, boxes[i]);
          const first = await d.readSmall?.(d.messages[0].id, 1024);
          assert.equal(first?.toString(), `Subject: ${boxes[i]} 0\r\n\r\n0\r\n`);
        }
        // Every lease was committed before its login was answered: another process finds each one locked.
        for (const b of boxes) await rejectsWith(other.openMaildrop(b), 'inuse');
        const before = counted.n;
        await Promise.all(drops.map((d) => d.release()));
        assert.equal(counted.n, before + 1, 'twelve releases in one round trip');
        counted.restore();
        assert.equal((await store.pool.query('select 1 from maildrop_leases')).rows.length, 0);
        for (const b of boxes) await (await other.openMaildrop(b)).release();
      } finally {
        await store.close();
        await other.close();
      }
    });

    test('a statement that fails rolls its batch back; the others run again alone and only it fails', async () => {
      const { store } = await fresh();
      const admin = new pg.Pool({ connectionString: db.url, max: 1 });
      try {
        for (const b of ['fa', 'fb', 'fc', 'fd']) await deliverBytes(store, b, `Subject: ${b}\r\n\r\n${b}\r\n`);
        // The database refuses a lease of mailbox "boom" (as it would a statement it cannot run).
        await admin.query(`create function postern_test_refuse() returns trigger language plpgsql as $$
          begin if new.mailbox_id = 'boom' then raise exception 'refused for the test'; end if; return new; end $$`);
        await admin.query(`create trigger postern_test_refuse before insert on maildrop_leases
          for each row execute function postern_test_refuse()`);
        const counted = countStatements(store);
        const tries = ['fa', 'boom', 'fb', 'fc', 'fd'].map((b) => store.openMaildrop(b));
        const settled = await Promise.allSettled(tries);
        // One batch, rolled back, then each of its five statements alone.
        assert.equal(counted.n, 1 + 5);
        counted.restore();
        const [fa, boom, fb, fc, fd] = settled;
        assert.equal(boom.status, 'rejected');
        assert.match(String((boom as PromiseRejectedResult).reason), /refused for the test/);
        assert.equal((boom as PromiseRejectedResult).reason.kind, 'temp');
        for (const r of [fa, fb, fc, fd]) {
          assert.equal(r.status, 'fulfilled');
          assert.equal((r as PromiseFulfilledResult<Awaited<(typeof tries)[0]>>).value.messages.length, 1);
        }
        const leases = await admin.query<{ mailbox_id: string }>('select mailbox_id from maildrop_leases order by 1');
        assert.deepEqual(
          leases.rows.map((r) => r.mailbox_id),
          ['fa', 'fb', 'fc', 'fd'],
        );
        for (const r of [fa, fb, fc, fd])
          await (r as PromiseFulfilledResult<Awaited<(typeof tries)[0]>>).value.release();
        assert.equal((await admin.query('select 1 from maildrop_leases')).rows.length, 0);
      } finally {
        await admin.query('drop trigger if exists postern_test_refuse on maildrop_leases');
        await admin.query('drop function if exists postern_test_refuse()');
        await admin.end();
        await store.close();
      }
    });

    test('quota is enforced in the delivery transaction, also for concurrent deliveries', async () => {
      const { store } = await fresh();
      try {
        const quota = { bytes: 0, messages: 5 };
        const results = await Promise.allSettled(
          Array.from({ length: 12 }, (_, i) =>
            store.deliver('dave', Readable.from([Buffer.from(`Subject: ${i}\r\n\r\n${i}\r\n`)]), { quota }),
          ),
        );
        assert.equal(results.filter((r) => r.status === 'fulfilled').length, 5);
        for (const r of results) if (r.status === 'rejected') assert.ok(r.reason instanceof QuotaExceededError);
        assert.equal((await store.stats('dave')).messages, 5);
        const d = await store.openMaildrop('dave');
        assert.equal(d.messages.length, 5);
        await d.release();
        await assert.rejects(
          store.deliver('erin', Readable.from([Buffer.alloc(5000, 0x61)]), { quota: { bytes: 4000, messages: 0 } }),
          (e: unknown) => e instanceof QuotaExceededError,
        );
        assert.deepEqual(await store.stats('erin'), { messages: 0, bytes: 0 });
        const chunks = await store.pool.query(
          "select count(*)::int as n from message_chunks where mailbox_id = 'erin'",
        );
        assert.equal(chunks.rows[0].n, 0);
      } finally {
        await store.close();
      }
    });

    test('a login is one statement, a QUIT without deletions none (with deletions one), in-order RETRs fetched in batches', async () => {
      const { store } = await fresh();
      try {
        const texts = Array.from({ length: 40 }, (_, i) => `Subject: ${i}\r\n\r\n${'z'.repeat(i * 10)}\r\n`);
        for (const t of texts) await deliverBytes(store, 'ivan', t);
        const counted = countStatements(store);
        const d = await store.openMaildrop('ivan');
        assert.equal(counted.n, 1);
        assert.equal(d.messages.length, 40);
        const read = d.readSmall?.bind(d);
        assert.ok(read);
        for (const [i, m] of d.messages.entries()) assert.equal((await read(m.id, 128 * 1024))?.toString(), texts[i]);
        // Batches of 32, then 64: two statements for 40 RETRs.
        assert.equal(counted.n, 1 + 2, `${counted.n} statements for 40 RETRs`);
        let before = counted.n;
        await d.commit([]);
        assert.equal(counted.n, before);
        // Deletions are one statement (lease check, messages, chunks, counts), the release one more.
        await d.commit(d.messages.slice(0, 10).map((m) => m.id));
        assert.equal(counted.n, before + 1);
        before = counted.n;
        await d.release();
        assert.equal(counted.n, before + 1);
        counted.restore();
        assert.deepEqual(await store.stats('ivan'), {
          messages: 30,
          bytes: texts.slice(10).reduce((n, t) => n + t.length, 0),
        });
        const chunks = await store.pool.query(
          "select count(*)::int as n from message_chunks where mailbox_id = 'ivan'",
        );
        assert.equal(chunks.rows[0].n, 30);
      } finally {
        await store.close();
      }
    });

    test('a mailbox read in order from the first has its next login read the small bodies ahead (bounded)', async () => {
      const { store } = await fresh();
      try {
        // 30 000 octets each, message 2 of 70 000 (two chunks of 64 KiB here: never read ahead). Running total
        // of octets: 30k, 60k, 130k, … 250k for the first seven, beyond 256 KiB from the eighth.
        const texts = Array.from(
          { length: 12 },
          (_, i) => `Subject: ${i}\r\n\r\n${String.fromCharCode(97 + i).repeat(i === 2 ? 70_000 : 30_000 - 15)}\r\n`,
        );
        for (const t of texts) await deliverBytes(store, 'read', t);
        const counted = countStatements(store);
        /** A session that reads these messages (indexes) and quits; the statements each read cost. */
        const session = async (which: number[]): Promise<number[]> => {
          const d = await store.openMaildrop('read');
          const cost: number[] = [];
          for (const i of which) {
            const before = counted.n;
            const body = await d.readSmall?.(d.messages[i].id, 128 * 1024);
            assert.equal(body?.toString(), texts[i]);
            cost.push(counted.n - before);
          }
          await d.release();
          return cost;
        };
        const all = texts.map((_, i) => i);
        // First session: nothing is known, the first read fetches a batch.
        assert.equal((await session(all))[0], 1);
        // It read in order from the first: the next login brings 0, 1, 3, 4, 5, 6 along (not the two-chunk
        // message 2, nothing past 256 KiB): one statement for the login, none for those reads.
        counted.n = 0;
        const cost = await session(all);
        assert.deepEqual([cost[0], cost[1], cost[3], cost[4], cost[5], cost[6]], [0, 0, 0, 0, 0, 0]);
        assert.ok(cost[2] >= 1); // a batch from 2 on (the two-chunk body then read on its own)
        // A session that reads out of order (a client fetching only new mail) turns it off again.
        assert.deepEqual(await session([5]), [0]);
        counted.n = 0;
        assert.deepEqual(await session([0]), [1]);
        counted.restore();
      } finally {
        await store.close();
      }
    });

    test('small bodies fetched as encode(data, escape) come back octet for octet', async () => {
      const { store } = await fresh();
      try {
        // What the database sends, decoded: every octet value, backslashes before digits, runs of them.
        const samples = [
          Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
          Buffer.from('a\\000b\\\\c\\\\\\101\\'),
          Buffer.from('plain ASCII, no backslash'),
          Buffer.alloc(0),
          Buffer.from([0, 0, 255, 92, 92, 48, 49, 50, 128]),
        ];
        for (const b of samples) {
          const r = await store.pool.query<{ t: string }>("select encode($1::bytea, 'escape') as t", [b]);
          assert.ok(unescapeBytea(r.rows[0].t).equals(b), b.toString('hex'));
        }
        // Through the store: the batch (first session) and the login's read-ahead (second).
        const body = Buffer.concat([
          Buffer.from('Subject: bytes\r\n\r\n'),
          samples[0],
          samples[1],
          Buffer.from('\r\n'),
        ]);
        await deliverBytes(store, 'bytes', body);
        await deliverBytes(store, 'bytes', body);
        for (let session = 0; session < 2; session++) {
          const d = await store.openMaildrop('bytes');
          for (const m of d.messages) assert.ok((await d.readSmall?.(m.id, 1 << 20))?.equals(body));
          await d.release();
        }
      } finally {
        await store.close();
      }
    });

    test('a body of a few KB stays in its chunk row, uncompressed, not in the TOAST table (schema 5)', async () => {
      const { store } = await fresh();
      try {
        // 4 KB of text that LZ4 compresses to about 2.5 KB: over PostgreSQL's default TOAST target (2 KB), so
        // without the table's toast_tuple_target it would go out of line, compressed.
        let x = 12345;
        const letters = Array.from({ length: 4000 }, () => {
          x = (x * 1103515245 + 12345) % 2 ** 31;
          return 'abcdefghijklmnopqrstuvwxyz0123456789 '[x % 37];
        }).join('');
        const text = `Subject: inline\r\n\r\n${letters}\r\n`;
        await deliverBytes(store, 'inline', text);
        const toast = await store.pool.query<{ t: string }>(
          "select reltoastrelid::regclass::text as t from pg_class where relname = 'message_chunks'",
        );
        const r = await store.pool.query<{ compression: string | null; stored: number; external: number }>(
          `select pg_column_compression(data) as compression, pg_column_size(data) as stored,
                  (select count(*)::int from ${toast.rows[0].t}) as external
             from message_chunks where mailbox_id = 'inline'`,
        );
        assert.deepEqual(r.rows, [{ compression: null, stored: text.length + 4, external: 0 }]);
        const d = await store.openMaildrop('inline');
        assert.equal((await d.readSmall?.(d.messages[0].id, 1 << 20))?.toString(), text);
        await d.release();
      } finally {
        await store.close();
      }
    });

    test('a slow sender holds no database connection: the body is staged, then published in one short transaction', async () => {
      const { store } = await fresh();
      const other = new PostgresStore({ url: db.url, poolSize: 1 });
      try {
        // More than a chunk (64 KiB here), so it is staged in a file; the sender stalls half-way.
        const first = Buffer.alloc(150_000, 0x61);
        const second = Buffer.from(`${'b'.repeat(99)}\n`.repeat(1000));
        let resume: () => void = () => {};
        const stalled = new Promise<void>((r) => {
          resume = r;
        });
        let reached: () => void = () => {};
        const atStall = new Promise<void>((r) => {
          reached = r;
        });
        async function* slow() {
          yield first;
          reached();
          await stalled;
          yield second;
        }
        const delivery = store.deliver('kim', Readable.from(slow()));
        delivery.catch(() => {});
        await atStall;
        await new Promise((r) => setTimeout(r, 200));
        try {
          // While the sender is silent: no connection checked out, no transaction open, nothing visible.
          assert.equal(store.pool.totalCount - store.pool.idleCount, 0);
          const open = await other.pool.query(
            "select count(*)::int as n from pg_stat_activity where datname = current_database() and state like 'idle in transaction%'",
          );
          assert.equal(open.rows[0].n, 0);
          assert.deepEqual(await other.stats('kim'), { messages: 0, bytes: 0 });
        } finally {
          resume();
        }
        const r = await delivery;
        const d = await other.openMaildrop('kim');
        assert.equal(d.messages.length, 1);
        const back: Buffer[] = [];
        for await (const c of await d.open(r.id)) back.push(c as Buffer);
        assert.ok(Buffer.concat(back).equals(Buffer.concat([first, second])));
        await d.release();
        // A sender that fails half-way stores nothing (and leaves no chunk behind).
        async function* broken() {
          yield first;
          throw new Error('connection reset');
        }
        await rejectsWith(store.deliver('kim', Readable.from(broken())), 'temp');
        assert.equal((await other.stats('kim')).messages, 1);
        const chunks = await other.pool.query("select count(*)::int as n from message_chunks where mailbox_id = 'kim'");
        assert.equal(chunks.rows[0].n, Math.ceil((first.length + second.length) / (64 * 1024)));
      } finally {
        await store.close();
        await other.close();
      }
    });

    test('a 20 MB message is stored in chunks and read back one chunk at a time', async () => {
      const { store } = await fresh();
      try {
        const piece = Buffer.alloc(1 << 20, 0x62);
        async function* gen() {
          for (let i = 0; i < 20; i++) yield piece;
        }
        const r = await store.deliver('frank', Readable.from(gen()));
        const n = await store.pool.query<{ n: number; max: number }>(
          "select count(*)::int as n, max(length(data))::int as max from message_chunks where mailbox_id = 'frank'",
        );
        assert.equal(n.rows[0].n, 320);
        assert.equal(n.rows[0].max, 64 * 1024);
        const d = await store.openMaildrop('frank');
        const stream = await d.open(r.id);
        let total = 0;
        let biggest = 0;
        for await (const c of stream) {
          total += (c as Buffer).length;
          biggest = Math.max(biggest, (c as Buffer).length);
        }
        assert.equal(total, 20 << 20);
        assert.ok(biggest > 0 && biggest <= 32 * 1024, `pieces of up to ${biggest} octets`); // slices of a chunk
        assert.equal(await d.readSmall?.(r.id, 1 << 20), null);
        await d.release();
      } finally {
        await store.close();
      }
    });

    test('bodies are read with binary COPY: raw octets, errors reported, the connection reusable', async () => {
      const { store } = await fresh();
      const run = (sql: string) =>
        new Promise<Buffer[]>((resolve, reject) => {
          const pool = store.pool as unknown as {
            query(q: CopyRead, cb: (err: Error | null | undefined, rows?: Buffer[]) => void): void;
          };
          pool.query(new CopyRead(sql), (err, rows) => (err ? reject(err) : resolve(rows ?? [])));
        });
      try {
        const all = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
        const rows = await run(`select decode('${all.toString('hex')}', 'hex') from generate_series(1, 3)`);
        assert.equal(rows.length, 3);
        for (const r of rows) assert.ok(r.equals(all)); // every octet value, not a text rendering
        assert.deepEqual(await run("select ''::bytea where false"), []);
        await assert.rejects(run('select 1 / 0'), /division by zero/);
        await assert.rejects(run("select 'a'::bytea, 'b'::bytea"), /2 columns/);
        await assert.rejects(run('select null::bytea'), /null value/);
        assert.equal((await store.pool.query('select 41 + 1 as n')).rows[0].n, 42);
      } finally {
        await store.close();
      }
    });

    test('UIDL listing of 100 000 messages is one query and reads no body', async () => {
      const { store } = await fresh();
      try {
        await store.pool.query(
          `insert into messages (mailbox_id, message_id, ord, uidl, size, raw_size, chunks)
           select 'gina', nextval('postern_message_id_seq'), g, 'u' || g, 100, 98, 1 from generate_series(1, 100000) g`,
        );
        const plan = await store.pool.query(
          "explain select message_id, uidl, size from messages where mailbox_id = 'gina' order by ord",
        );
        const text = plan.rows.map((r) => Object.values(r)[0]).join('\n');
        assert.match(text, /Index Only Scan using messages_listing|Index Scan using messages_listing|Sort/);
        assert.doesNotMatch(text, /message_chunks/);
        const t0 = Date.now();
        const d = await store.openMaildrop('gina', { lock: false });
        const ms = Date.now() - t0;
        assert.equal(d.messages.length, 100_000);
        assert.equal(d.messages[99_999].uidl, 'u100000');
        await d.release();
        assert.ok(ms < 10_000, `listing took ${ms} ms`);
      } finally {
        await store.close();
      }
    });

    test('a pooled connection keeps the memory of large statements rather than faulting it in again', async (t) => {
      if (!db.ours) return t.skip("needs a cluster on this machine, to read its backends' page faults");
      const faults = (pid: number) => {
        const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
        return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]); // minflt
      };
      // ~2 MB of sorted rows in blocks that grow past 128 KiB, all freed at the end (as a login batch's bodies).
      const sort =
        "select count(*) from (select repeat('x', 1000) || g as s from generate_series(1, 2000) g order by 1) q";
      const measure = async (query: (sql: string) => Promise<unknown>, pid: number) => {
        for (let i = 0; i < 3; i++) await query(sort);
        const before = faults(pid);
        for (let i = 0; i < 10; i++) await query(sort);
        return faults(pid) - before;
      };
      const plain = new pg.Client({ connectionString: db.url });
      await plain.connect();
      const pool = createPgPool({ url: db.url, poolSize: 1 });
      const pooled = await pool.connect();
      try {
        const pidOf = async (q: pg.Client | pg.PoolClient) =>
          (await q.query<{ p: number }>('select pg_backend_pid() as p')).rows[0].p;
        const without = await measure((sql) => plain.query(sql), await pidOf(plain));
        const warmed = await measure((sql) => pooled.query(sql), await pidOf(pooled));
        if (without < 100) return t.skip(`this database's allocator keeps freed memory anyway (${without} faults)`);
        assert.ok(warmed < without / 10, `${warmed} page faults on a pooled connection, ${without} on a plain one`);
      } finally {
        pooled.release();
        await pool.end();
        await plain.end();
      }
    });

    test('a database that is down is a temporary error, and the store reconnects when it is back', async (t) => {
      if (!db.ours) return t.skip('needs a cluster started by the tests');
      const { store } = await fresh();
      try {
        await deliverBytes(store, 'hank', 'Subject: 1\r\n\r\n1\r\n');
        db.stop();
        try {
          await rejectsWith(store.stats('hank'), 'temp');
          await rejectsWith(store.openMaildrop('hank'), 'temp');
          await rejectsWith(deliverBytes(store, 'hank', 'x\r\n'), 'temp');
        } finally {
          db.start();
        }
        assert.equal((await store.stats('hank')).messages, 1);
        const d = await store.openMaildrop('hank');
        assert.equal(d.messages.length, 1);
        await d.release();
      } finally {
        await store.close();
      }
    });
  });
}
