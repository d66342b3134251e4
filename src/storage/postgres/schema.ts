/**
 * The versioned schema of the PostgreSQL store. `postern db migrate` applies the steps a database lacks, each
 * in its own transaction with the version bump; a server checks the version at start and refuses to run on a
 * schema older or newer than the one it was built for (SCHEMA_VERSION), so an old binary never writes rows a
 * newer schema reads differently.
 *
 * Every table that holds mailbox data has the mailbox id as the first column of its primary key and of every
 * unique index, and no foreign key crosses mailboxes: the tables can be distributed by `mailbox_id` with Citus
 * (README, "PostgreSQL store"). `users` and `login_failures` are small and keyed by user name / client
 * address; they are reference (replicated) tables in a Citus cluster.
 */
import type pg from 'pg';
import { StorageError } from '../types.ts';

export const SCHEMA_VERSION = 5;

/** Step n (1-based) brings a database from version n-1 to n. Never edit a released step; add one. */
const STEPS: readonly string[] = [
  `
  create table postern_schema (
    singleton boolean primary key default true check (singleton),
    version integer not null,
    updated_at timestamptz not null default now()
  );
  insert into postern_schema (version) values (0);

  -- Store keys of messages; global so that a key never repeats, even across mailboxes moved between nodes.
  create sequence postern_message_id_seq;

  -- One row per mailbox that ever received mail or kept session state. Counts and bytes are kept by every
  -- delivery and commit in the same transaction, so STAT of an unopened mailbox and quota checks are one row.
  create table mailboxes (
    mailbox_id text primary key,
    next_ord bigint not null default 1,
    messages bigint not null default 0,
    bytes bigint not null default 0,
    -- MaildropState: lastLogin (LOGIN-DELAY) and first-retrieval times (EXPIRE).
    state jsonb not null default '{}'
  );

  -- One row per message: what STAT, LIST and UIDL need, without touching a body.
  create table messages (
    mailbox_id text not null,
    message_id bigint not null,
    ord bigint not null,
    uidl text not null,
    size bigint not null,       -- octets as transmitted (CRLF, before dot-stuffing)
    raw_size bigint not null,   -- octets as stored
    chunks integer not null,
    delivered_at timestamptz not null default now(),
    primary key (mailbox_id, message_id)
  );
  -- The maildrop listing: one index range scan, oldest first, no heap access needed.
  create unique index messages_listing on messages (mailbox_id, ord) include (message_id, uidl, size);
  create unique index messages_uidl on messages (mailbox_id, uidl);

  -- Bodies in chunks of at most chunk_size octets, streamed in and out one chunk at a time.
  create table message_chunks (
    mailbox_id text not null,
    message_id bigint not null,
    seq integer not null,
    data bytea not null,
    primary key (mailbox_id, message_id, seq)
  );

  -- The exclusive maildrop lock (RFC 1939 §8) across processes and machines: a lease with an owner and an
  -- expiry (database clock), renewed by the holder, taken over once expired.
  create table maildrop_leases (
    mailbox_id text primary key,
    owner text not null,
    expires_at timestamptz not null
  );

  -- Users for [auth] driver = "postgres" (the passwd file's fields as columns).
  create table users (
    name text primary key,
    mailbox_id text not null,
    password text not null,          -- {SCHEME}… or an argon2/crypt string, as in the passwd file
    scram_sha256 text,               -- "iterations:salt:storedKey:serverKey" (base64), as the passwd field
    apop_secret text,                -- the plaintext shared secret for APOP/CRAM-MD5, or null
    login_delay integer,             -- seconds; null: [policy] login_delay
    expire text,                     -- days or "never"; null: [policy] expire
    quota_bytes bigint,              -- null: [quota] bytes
    quota_messages bigint,           -- null: [quota] messages
    disabled boolean not null default false,
    created_at timestamptz not null default now()
  );

  -- The failed-login penalty shared by every frontend: recent failures per client address.
  create table login_failures (
    address text primary key,
    failures integer not null,
    last_failure timestamptz not null
  );
  `,
  // 2: the leases are not WAL-logged. A lease lives for a session, and every login and logout writes one:
  // logged, each of those commits waits for a WAL flush (an fsync; 0.3-2 ms here, far more than the statement);
  // unlogged, they write no WAL and wait for nothing. What is given up is safe: after a database crash (or on
  // a promoted standby) the table is empty, so the holders of that moment lose their leases (their renewals
  // and QUITs find no row of theirs: nothing is deleted, -ERR [SYS/TEMP]) and the mailboxes are free at once.
  `
  alter table maildrop_leases set unlogged;
  `,
  // 3: bodies compressed with LZ4 rather than pglz (PostgreSQL 14 or later built with lz4, as the Debian and
  // PGDG packages are; otherwise pglz as before): a session of 20 RETRs of 4 KB spent 9 % of the database's
  // CPU in pglz_decompress. Applies to chunks written from now on; older ones stay as they are.
  `
  do $$
  begin
    alter table message_chunks alter column data set compression lz4;
  exception when feature_not_supported or syntax_error then
    null;
  end
  $$;
  `,
  // 4: when the lease was taken (database clock), so the login's upsert can decide "expired" by comparing two
  // columns (the old row's expiry with the new row's time): Citus refuses now() in ON CONFLICT … WHERE.
  `
  alter table maildrop_leases add column taken_at timestamptz not null default now();
  `,
  // 5: chunks of up to ~8 KB stay in the table's own row, uncompressed (larger ones are compressed, and moved
  // to the TOAST table only when that does not bring them under a page): with PostgreSQL's default (2 KB),
  // a 4 KB body compressed to 2.5 KB went out of line, so reading it cost a TOAST index lookup, two TOAST
  // rows and a decompression. Applies to chunks written from now on; older ones stay as they are until
  // rewritten (`update message_chunks set data = substring(data from 1) where length(data) < 8000`). Only a
  // speed-up: where the table cannot take the option (a Citus version that does not pass it on to the shards),
  // the step changes nothing rather than failing.
  `
  do $$
  begin
    alter table message_chunks set (toast_tuple_target = 8160);
  exception when feature_not_supported then
    null;
  end
  $$;
  `,
];

export async function schemaVersion(db: pg.Pool | pg.PoolClient): Promise<number | null> {
  const exists = await db.query<{ t: string | null }>("select to_regclass('postern_schema')::text as t");
  if (exists.rows[0]?.t == null) return null;
  const r = await db.query<{ version: number }>('select version from postern_schema');
  return r.rows[0]?.version ?? 0;
}

/**
 * Brings the database to SCHEMA_VERSION; returns the versions before and after. Concurrent runs are serialised
 * by an advisory lock. Refuses a database newer than this program.
 */
export async function migrate(pool: pg.Pool): Promise<{ from: number; to: number }> {
  const client = await pool.connect();
  try {
    await client.query('select pg_advisory_lock(7710912)');
    try {
      const from = (await schemaVersion(client)) ?? 0;
      if (from > SCHEMA_VERSION) {
        throw new StorageError(
          'perm',
          `database schema is version ${from}, newer than this Postern (${SCHEMA_VERSION})`,
        );
      }
      for (let v = from; v < SCHEMA_VERSION; v++) {
        await client.query('begin');
        try {
          await client.query(STEPS[v]);
          await client.query('update postern_schema set version = $1, updated_at = now()', [v + 1]);
          await client.query('commit');
        } catch (e) {
          await client.query('rollback').catch(() => {});
          throw e;
        }
      }
      return { from, to: SCHEMA_VERSION };
    } finally {
      await client.query('select pg_advisory_unlock(7710912)').catch(() => {});
    }
  } finally {
    client.release();
  }
}

/** Throws StorageError('perm') unless the database is at exactly SCHEMA_VERSION. */
export async function assertSchema(pool: pg.Pool): Promise<number> {
  const v = await schemaVersion(pool);
  if (v === SCHEMA_VERSION) return v;
  if (v === null || v < SCHEMA_VERSION) {
    throw new StorageError(
      'perm',
      `database schema is ${v === null ? 'missing' : `version ${v}`}; this Postern needs version ${SCHEMA_VERSION}: run \`postern db migrate\``,
    );
  }
  throw new StorageError(
    'perm',
    `database schema is version ${v}, newer than this Postern understands (${SCHEMA_VERSION}): upgrade Postern`,
  );
}
