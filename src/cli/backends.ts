/**
 * The store and the user database a config names, built in one place for every command (serve, deliver,
 * mailbox, user, db): Maildir or PostgreSQL for mail, the passwd file or PostgreSQL for users. PostgreSQL
 * connections are pooled per URL, so a server whose mail and users live in one database opens one pool.
 */
import type pg from 'pg';
import type { Logger } from 'pino';
import { passwdFileAdmin, type UserAdmin } from '../auth/admin.ts';
import { PasswdFileAuthenticator } from '../auth/passwd.ts';
import { PostgresUserDb } from '../auth/postgres.ts';
import type { Authenticator } from '../auth/types.ts';
import type { Config, PostgresConfig } from '../config/config.ts';
import { UsersFile } from '../delivery/users.ts';
import { MaildirStore } from '../storage/maildir/store.ts';
import { createPgPool } from '../storage/postgres/pool.ts';
import { assertSchema } from '../storage/postgres/schema.ts';
import { PostgresStore } from '../storage/postgres/store.ts';
import type { MailStore, QuotaSource } from '../storage/types.ts';

/** A user database the server can log users in with, reload on SIGHUP, and close. */
export type UserDatabase = Authenticator & { reload(): Promise<void> };

/** PostgreSQL pools of one process, one per URL. */
export class Databases {
  private readonly pools = new Map<string, pg.Pool>();
  private readonly checked = new Set<pg.Pool>();

  constructor(private readonly logger?: Pick<Logger, 'warn'>) {}

  pool(settings: PostgresConfig): pg.Pool {
    const key = settings.url ?? '';
    let pool = this.pools.get(key);
    if (!pool) {
      pool = createPgPool(settings, this.logger);
      this.pools.set(key, pool);
    }
    return pool;
  }

  /** The pool, once its schema is known to be the one this program needs (refuses to run otherwise). */
  async checkedPool(settings: PostgresConfig): Promise<pg.Pool> {
    const pool = this.pool(settings);
    if (!this.checked.has(pool)) {
      await assertSchema(pool);
      this.checked.add(pool);
    }
    return pool;
  }

  async close(): Promise<void> {
    const pools = [...this.pools.values()];
    this.pools.clear();
    await Promise.all(pools.map((p) => p.end().catch(() => {})));
  }
}

export interface OpenStoreOptions {
  readonly syncSmallReads?: boolean;
  readonly warn?: (fields: Record<string, unknown>, msg: string) => void;
}

/** The store `config` names: the one place a store is built from configuration. */
export function openMailStore(config: Config, dbs: Databases, options: OpenStoreOptions = {}): Promise<MailStore> {
  return storeFor(config.storage, dbs, options);
}

/**
 * The store of a `[storage]` table (also a migration's other end). A new driver is one more case here, and
 * the `driver` type in config/ makes every switch on it name the new case.
 */
export async function storeFor(
  st: Config['storage'],
  dbs: Databases,
  options: OpenStoreOptions = {},
): Promise<MailStore> {
  switch (st.driver) {
    case 'postgres':
      return new PostgresStore({ pool: await dbs.checkedPool(st.postgres), leaseMs: st.postgres.leaseMs });
    case 'maildir':
      return new MaildirStore({
        root: st.root,
        layout: st.layout,
        syncSmallReads: options.syncSmallReads ?? st.syncSmallReads,
        warn: options.warn,
      });
  }
}

export async function openUserDatabase(
  config: Config,
  dbs: Databases,
  logger: Logger,
  onCacheLookup?: (result: 'hit' | 'miss') => void,
): Promise<UserDatabase> {
  const cache = { maxEntries: config.auth.cacheSize, ttlMs: config.auth.cacheTtlMs };
  if (config.auth.driver === 'postgres') {
    return PostgresUserDb.load(await dbs.checkedPool(config.auth.postgres), { logger, cache, quota: config.quota });
  }
  return PasswdFileAuthenticator.load(config.auth.usersFile, {
    logger,
    cache,
    scramIterations: config.auth.scramIterations,
    onCacheLookup,
  });
}

/** Who exists and their quota, as delivery sees them (no password is looked at). */
export async function openDeliveryUsers(
  config: Config,
  dbs: Databases,
  warn: (msg: string) => void,
): Promise<Pick<Authenticator, 'lookup'> & QuotaSource> {
  if (config.auth.driver === 'postgres') {
    return new PostgresUserDb(await dbs.checkedPool(config.auth.postgres), { quota: config.quota });
  }
  return new UsersFile(config.auth.usersFile, config.quota, warn);
}

/** What `postern user …` edits. */
export async function openUserAdmin(config: Config, dbs: Databases): Promise<UserAdmin> {
  if (config.auth.driver === 'postgres') {
    return new PostgresUserDb(await dbs.checkedPool(config.auth.postgres));
  }
  return passwdFileAdmin(config.auth.usersFile);
}
