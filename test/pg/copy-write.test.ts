/**
 * CopyWrite (src/storage/postgres/copy-write.ts) against a real PostgreSQL: rows written with binary COPY from
 * one buffer refilled after every send arrive intact (send resolves only once the socket is done with the
 * buffer), a row may be split over CopyData messages, and a producer failure or a server error rejects the
 * query and leaves the connection usable.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import pg from 'pg';
import { type CopyOut, CopyWrite } from '../../src/storage/postgres/copy-write.ts';
import { COPY_HEADER, COPY_TRAILER } from '../../src/storage/postgres/submittable.ts';
import { pgSkipReason, startTestPg, type TestPg } from './cluster.ts';

const skip = pgSkipReason();

/** A row of (k text, b bytea) up to the bytea's octets. */
function rowHead(k: string, length: number): Buffer {
  const key = Buffer.from(k);
  const b = Buffer.alloc(2 + 4 + key.length + 4);
  b.writeInt16BE(2, 0);
  b.writeInt32BE(key.length, 2);
  key.copy(b, 6);
  b.writeInt32BE(length, 6 + key.length);
  return b;
}

function copy(client: pg.PoolClient, produce: (out: CopyOut) => Promise<void>): Promise<void> {
  return new Promise((resolve, reject) => {
    const q = new CopyWrite('copy t (k, b) from stdin (format binary)', produce);
    (client as unknown as { query(q: CopyWrite, cb: (err: Error | null) => void): void }).query(q, (err) =>
      err ? reject(err) : resolve(),
    );
  });
}

if (skip) {
  test('CopyWrite', { skip }, () => {});
} else {
  let db: TestPg;
  let pool: pg.Pool;
  before(async () => {
    db = await startTestPg();
    pool = new pg.Pool({ connectionString: db.url, max: 1 });
    pool.on('error', () => {}); // an idle connection cut when the cluster stops
    await pool.query('create table t (k text primary key, b bytea not null)');
  });
  after(async () => {
    await pool?.end();
    await db?.close();
  });

  test('rows from one reused buffer, split over messages, arrive intact', async () => {
    const client = await pool.connect();
    try {
      const sizes = [0, 1, 70_000, 300_000, 5];
      const want = sizes.map((n, i) => Buffer.from(Array.from({ length: n }, (_, j) => (i * 31 + j * 7) & 0xff)));
      const buf = Buffer.alloc(16 * 1024);
      await copy(client, async (out) => {
        void out.send(COPY_HEADER);
        for (const [i, body] of want.entries()) {
          void out.send(rowHead(`r${i}`, body.length));
          for (let off = 0; off < body.length; off += buf.length) {
            const n = body.copy(buf, 0, off, off + buf.length);
            await out.send(buf.subarray(0, n)); // refilled right after: the socket must be done with it
          }
        }
        await out.send(COPY_TRAILER);
      });
      const r = await client.query<{ k: string; b: Buffer }>('select k, b from t order by k');
      assert.deepEqual(
        r.rows.map((x) => x.k),
        want.map((_, i) => `r${i}`),
      );
      for (const [i, row] of r.rows.entries()) assert.ok(row.b.equals(want[i]), `row ${i} intact`);
    } finally {
      client.release();
    }
  });

  test('a producer that fails rejects with its error; nothing is stored and the connection works', async () => {
    const client = await pool.connect();
    try {
      await client.query('truncate t');
      await assert.rejects(
        copy(client, async (out) => {
          void out.send(COPY_HEADER);
          void out.send(rowHead('x', 10));
          await out.send(Buffer.alloc(5));
          throw new Error('spool file unreadable');
        }),
        /spool file unreadable/,
      );
      assert.equal((await client.query('select count(*)::int as n from t')).rows[0].n, 0);
    } finally {
      client.release();
    }
  });

  test('a server error (a duplicate key) rejects, stops the producer and leaves the connection usable', async () => {
    const client = await pool.connect();
    try {
      await client.query('truncate t');
      await client.query("insert into t values ('dup', '\\x00')");
      let sawFailure: (failed: boolean) => void = () => {};
      const producerEnd = new Promise<boolean>((r) => {
        sawFailure = r;
      });
      const big = Buffer.alloc(64 * 1024, 0x61);
      await assert.rejects(
        copy(client, async (out) => {
          void out.send(COPY_HEADER);
          void out.send(rowHead('dup', 1));
          await out.send(Buffer.from('z'));
          // The server reports the duplicate once it processed the row: keep sending until it has.
          for (let i = 0; i < 2000 && !out.failed; i++) {
            void out.send(rowHead(`k${i}`, big.length));
            await out.send(big);
          }
          sawFailure(out.failed);
          await out.send(COPY_TRAILER);
        }),
        /duplicate key/,
      );
      assert.equal(await producerEnd, true, 'the producer saw the failure and stopped');
      assert.equal((await client.query('select count(*)::int as n from t')).rows[0].n, 1);
    } finally {
      client.release();
    }
  });
}
