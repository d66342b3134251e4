/**
 * `postern db migrate|version`: the PostgreSQL schema of the store and user database
 * (src/storage/postgres/schema.ts). migrate applies the missing steps (safe to run from several machines at
 * once: they are serialised by an advisory lock) and is what an upgrade runs before starting new servers.
 */
import { parseArgs } from 'node:util';
import type { Config, PostgresConfig } from '../config/config.ts';
import { createPgPool } from '../storage/postgres/pool.ts';
import { migrate, SCHEMA_VERSION, schemaVersion } from '../storage/postgres/schema.ts';

export const DB_HELP = `Usage: postern db <migrate|version> [--url URL] [--config FILE]

  migrate     Create or upgrade the PostgreSQL schema to version ${SCHEMA_VERSION} (what this Postern needs)
  version     Print the schema version of the database and the one this Postern needs

The database is [storage] url (or [auth] url when only users are in PostgreSQL), else the PG* environment
variables; --url overrides both.
`;

export interface DbIo {
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
  readonly config: () => Config;
}

/** The database a config points at: the store's, else the user database's. */
export function postgresOf(config: Config): PostgresConfig {
  return config.storage.driver === 'postgres' || config.auth.driver !== 'postgres'
    ? config.storage.postgres
    : config.auth.postgres;
}

export async function runDbCommand(args: string[], io: DbIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: { url: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [sub, ...extra] = positionals;
  if (values.help || sub === 'help') {
    io.stdout.write(DB_HELP);
    return 0;
  }
  if ((sub !== 'migrate' && sub !== 'version') || extra.length > 0) {
    io.stderr.write(`postern db: expected "migrate" or "version"\n\n${DB_HELP}`);
    return 64;
  }
  const settings = postgresOf(io.config());
  const pool = createPgPool({ ...settings, url: values.url ?? settings.url, poolSize: 1 });
  try {
    if (sub === 'version') {
      const v = await schemaVersion(pool);
      io.stdout.write(
        `database schema: ${v === null ? 'none' : `version ${v}`}; this Postern needs version ${SCHEMA_VERSION}\n`,
      );
      return v === SCHEMA_VERSION ? 0 : 1;
    }
    const { from, to } = await migrate(pool);
    io.stdout.write(
      from === to ? `schema is up to date (version ${to})\n` : `schema migrated from version ${from} to ${to}\n`,
    );
    return 0;
  } catch (e) {
    io.stderr.write(`postern db ${sub}: ${(e as Error).message}\n`);
    return 1;
  } finally {
    await pool.end().catch(() => {});
  }
}
