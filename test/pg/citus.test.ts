/**
 * The schema distributed with Citus exactly as the README says (its `create_distributed_table` and
 * `create_reference_table` calls, read from README.md), on a single-node Citus cluster whose coordinator holds
 * the shards, then the store's hot paths on it: a delivery of several chunks (binary COPY into the distributed
 * message_chunks) and a small one, the listing at login, RETR of both bodies (COPY of a query and the row's
 * own chunk), QUIT's deletions, and the counts after.
 *
 * Citus has no package in Debian's archive, so this skips (with the reason) unless it was installed by hand,
 * e.g. built from source (`./configure PG_CONFIG=… && make && make install`), and needs a cluster of its own.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { migrate } from '../../src/storage/postgres/schema.ts';
import { PostgresStore } from '../../src/storage/postgres/store.ts';
import { binDir, pgSkipReason, startTestPg, type TestPg } from './cluster.ts';
import { holdReleases } from './hold-releases.ts';

function citusSkipReason(): string | undefined {
  const pgSkip = pgSkipReason();
  if (pgSkip) return pgSkip;
  if (process.env.POSTERN_TEST_PG_URL) return 'needs a cluster of its own (shared_preload_libraries = citus)';
  const bin = binDir();
  if (!bin || !existsSync(join(bin, '..', 'lib', 'citus.so'))) {
    return `Citus is not installed (no citus.so beside ${bin ?? 'PostgreSQL'}; Debian has no package of it)`;
  }
  return undefined;
}

/** The statements of the README's Citus section, in order. */
function readmeCalls(): string[] {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const section = readme.slice(readme.indexOf('### Spreading mailboxes over several database nodes (Citus)'));
  const block = /```sql\n([\s\S]*?)```/.exec(section);
  assert.ok(block, 'the README has the SQL of the distribution');
  return block[1]
    .split(';')
    .map((x) => x.trim())
    .filter(Boolean);
}

const skip = citusSkipReason();
if (skip) {
  test('the schema distributed with Citus', { skip }, () => {});
} else {
  let db: TestPg;
  let pool: pg.Pool;
  before(async () => {
    db = await startTestPg({ settings: ['shared_preload_libraries=citus'] });
    pool = new pg.Pool({ connectionString: db.url, max: 2 });
    await pool.query('create extension citus');
    // One node: the coordinator holds the shards.
    const node = ['127.0.0.1', Number(new URL(db.url).port)];
    await pool.query('select citus_set_coordinator_host($1, $2)', node);
    await pool.query("select citus_set_node_property($1, $2, 'shouldhaveshards', true)", node);
    await migrate(pool);
  });
  after(async () => {
    await pool?.end();
    await db?.close();
  });

  test("the README's create_distributed_table calls distribute the schema by mailbox_id", async () => {
    const calls = readmeCalls();
    assert.ok(calls.length >= 6, `${calls.length} statements`);
    for (const sql of calls) await pool.query(sql);
    const r = await pool.query<{ t: string; method: string; column: string | null }>(
      `select logicalrelid::text as t, partmethod::text as method,
              column_to_column_name(logicalrelid, partkey) as column
         from pg_dist_partition order by 1`,
    );
    const got = Object.fromEntries(r.rows.map((x) => [x.t, `${x.method}:${x.column ?? ''}`]));
    for (const t of ['mailboxes', 'messages', 'message_chunks', 'maildrop_leases']) {
      assert.equal(got[t], 'h:mailbox_id', `${t} is distributed by mailbox_id`);
    }
    for (const t of ['users', 'login_failures']) assert.equal(got[t], 'n:', `${t} is a reference table`);
    const colocated = await pool.query<{ n: number }>(
      `select count(distinct colocationid)::int as n from pg_dist_partition
        where logicalrelid::text in ('mailboxes', 'messages', 'message_chunks', 'maildrop_leases')`,
    );
    assert.equal(colocated.rows[0].n, 1, 'the mailbox tables are colocated');
  });

  // The login's lease upsert compares two columns (expires_at of the old row, taken_at of the new one): Citus
  // refuses now() in ON CONFLICT … WHERE ("functions used in the WHERE clause of the ON CONFLICT clause of
  // INSERTs on distributed tables must be marked IMMUTABLE").
  test('deliveries, the listing, RETR and QUIT work on the distributed tables', async () => {
    const distributed = await pool.query<{ n: number }>(
      "select count(*)::int as n from pg_dist_partition where logicalrelid = 'message_chunks'::regclass",
    );
    assert.equal(distributed.rows[0].n, 1, 'message_chunks is distributed');
    const store = new PostgresStore({ url: db.url, poolSize: 2, chunkSize: 64 * 1024 });
    try {
      const big = Buffer.alloc(300_000, 0x61);
      big.write('Subject: big\n\n');
      const small = Buffer.from('Subject: small\n\nhello\n');
      const first = await store.deliver('alice', Readable.from([big]));
      const second = await store.deliver('alice', Readable.from([small]));
      await store.deliver('bob', Readable.from([small]));
      const d = await store.openMaildrop('alice');
      try {
        assert.deepEqual(
          d.messages.map((m) => m.id),
          [first.id, second.id],
        );
        for (const [id, want] of [
          [first.id, big],
          [second.id, small],
        ] as const) {
          const parts: Buffer[] = [];
          for await (const c of await d.open(id)) parts.push(c as Buffer);
          assert.ok(Buffer.concat(parts).equals(want), `message ${id} read back intact`);
        }
        await d.commit([first.id]);
      } finally {
        await d.release();
      }
      assert.deepEqual(await store.stats('alice'), { messages: 1, bytes: second.size });
      assert.equal((await store.stats('bob')).messages, 1);
      const chunks = await pool.query<{ n: number }>(
        "select count(*)::int as n from message_chunks where mailbox_id = 'alice'",
      );
      assert.equal(chunks.rows[0].n, 1, "the deleted message's chunks went with it");
      // A login of a mailbox whose release this process has not finished takes the lease over (the
      // upsert's `owner = $6` on the distributed table).
      const old = await store.openMaildrop('erin');
      const letGo = holdReleases(store);
      const released = old.release();
      await letGo.held;
      const again = await store.openMaildrop('erin');
      letGo();
      await released;
      const left = await pool.query<{ owner: string }>('select owner from maildrop_leases');
      assert.equal(left.rows.length, 1, 'the late release left the new lease alone');
      await again.release();
      assert.equal((await pool.query('select 1 from maildrop_leases')).rows.length, 0);
    } finally {
      await store.close();
    }
  });
}
