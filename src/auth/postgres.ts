/**
 * Users in PostgreSQL (`[auth] driver = "postgres"`, the `users` table of src/storage/postgres/schema.ts):
 * the same fields as a passwd-file line, as columns, shared by every frontend. Behind the same Authenticator
 * interface as the passwd file, with the same cost model: an unknown user, a disabled user and a wrong
 * password each pay one argon2id verification, so none answers sooner than another.
 *
 * Every login reads the user's row (one indexed query), so a change made on any machine applies at the next
 * login everywhere. Verified credentials are cached as in passwd.ts, keyed by the user, the password *and the
 * stored hash*: a password changed from another machine changes the key, so the cache never outlives it.
 * A database that cannot be reached is StorageError('temp') (`-ERR [SYS/TEMP]`), not a failed login.
 */
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { pgError } from '../storage/postgres/pool.ts';
import type { Quota, QuotaSource } from '../storage/types.ts';
import { assertMailboxId } from '../storage/types.ts';
import { timingSafeEqualStrings } from './compare.ts';
import { CredentialCache, type CredentialCacheOptions } from './credential-cache.ts';
import { userNameProblem } from './names.ts';
import { CREDENTIAL_CACHE_DEFAULTS } from './passwd.ts';
import { PasswdFileError, passwordProblem, type UserSummary } from './passwd-edit.ts';
import {
  encodeScramCredentials,
  makeScramCredentials,
  parseScramCredentials,
  SCRAM_DEFAULT_ITERATIONS,
} from './sasl/scram.ts';
import type { ScramCredentials } from './sasl/types.ts';
import {
  type Argon2Verify,
  defaultArgon2Verify,
  dummyArgon2Hash,
  hashPassword,
  parseStoredPassword,
  verifyStoredPassword,
} from './schemes.ts';
import type { Authenticator, AuthLogger, Principal } from './types.ts';
import { parseUserSettings, USER_SETTING_FIELDS } from './user-settings.ts';

export interface PostgresUserDbOptions {
  readonly logger?: AuthLogger;
  readonly cache?: CredentialCacheOptions;
  readonly argon2Verify?: Argon2Verify;
  /** Default quota for users whose row has none (the [quota] table). */
  readonly quota?: Quota;
  /** How often the "does any user have an APOP secret / policy override" flags are re-read (ms). */
  readonly flagsRefreshMs?: number;
}

interface UserRow {
  name: string;
  mailbox_id: string;
  password: string;
  scram_sha256: string | null;
  apop_secret: string | null;
  login_delay: number | null;
  expire: string | null;
  quota_bytes: string | null;
  quota_messages: string | null;
  disabled: boolean;
}

const silent: AuthLogger = { warn() {} };

export class PostgresUserDb implements Authenticator, QuotaSource {
  readonly cache: CredentialCache;
  private readonly logger: AuthLogger;
  private readonly argon2Verify: Argon2Verify;
  private readonly defaults: Quota;
  private flags = { secrets: false, overrides: false };
  private timer: NodeJS.Timeout | undefined;
  private readonly flagsRefreshMs: number;

  constructor(
    readonly pool: pg.Pool,
    opts: PostgresUserDbOptions = {},
  ) {
    this.logger = opts.logger ?? silent;
    this.argon2Verify = opts.argon2Verify ?? defaultArgon2Verify;
    this.cache = new CredentialCache(opts.cache ?? CREDENTIAL_CACHE_DEFAULTS);
    this.defaults = opts.quota ?? { bytes: 0, messages: 0 };
    this.flagsRefreshMs = opts.flagsRefreshMs ?? 30_000;
  }

  /** For the server: reads the flags, and re-reads them every flagsRefreshMs until close(). */
  static async load(pool: pg.Pool, opts: PostgresUserDbOptions = {}): Promise<PostgresUserDb> {
    const db = new PostgresUserDb(pool, opts);
    await Promise.all([db.reload(), dummyArgon2Hash()]);
    db.timer = setInterval(() => void db.reload().catch(() => {}), db.flagsRefreshMs);
    db.timer.unref();
    return db;
  }

  /** Re-reads the flags CAPA and the greeting depend on, and forgets cached credentials (SIGHUP). */
  async reload(): Promise<void> {
    try {
      const r = await this.pool.query<{ secrets: boolean; overrides: boolean }>(
        `select exists (select 1 from users where apop_secret is not null and not disabled) as secrets,
                exists (select 1 from users where login_delay is not null or expire is not null) as overrides`,
      );
      this.flags = r.rows[0];
    } catch (e) {
      throw pgError(e, 'users');
    }
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.cache.clear();
  }

  private async row(user: string): Promise<UserRow | null> {
    if (userNameProblem(user) !== null) return null;
    try {
      const r = await this.pool.query<UserRow>('select * from users where name = $1', [user]);
      return r.rows[0] ?? null;
    } catch (e) {
      throw pgError(e, 'users');
    }
  }

  async verifyPassword(user: string, password: string): Promise<Principal | null> {
    const row = await this.row(user);
    const stored = row ? parseStoredPassword(row.password) : null;
    const principal = row && !row.disabled && stored?.problem === null ? this.principalOf(row) : null;
    if (!row || !stored || principal === null) {
      await this.dummyVerify(password);
      if (row)
        this.logger.warn({ user }, row.disabled ? 'login refused: disabled' : 'login refused: no usable password');
      return null;
    }
    if (stored.kind === 'plain') {
      if (timingSafeEqualStrings(stored.value, password)) return principal;
      await this.dummyVerify(password);
      return null;
    }
    // The stored hash is part of the key: a password changed anywhere invalidates what was cached here.
    const key = this.cache.enabled ? this.cache.keyOf(user, `${row.password}\0${password}`) : null;
    if (key !== null && this.cache.has(key)) return principal;
    if (stored.kind !== 'argon2') await this.dummyVerify(password);
    let ok: boolean;
    try {
      ok = await verifyStoredPassword(stored, password, this.argon2Verify);
    } catch (err) {
      this.logger.warn({ user, err: String(err) }, 'password verification failed');
      return null;
    }
    if (!ok) return null;
    if (key !== null) this.cache.add(key);
    return principal;
  }

  async sharedSecret(user: string): Promise<string | null> {
    const row = await this.row(user);
    if (!row || row.disabled) return null;
    return row.apop_secret;
  }

  hasSharedSecrets(): boolean {
    return this.flags.secrets;
  }

  hasPolicyOverrides(): boolean {
    return this.flags.overrides;
  }

  async scramCredentials(user: string): Promise<ScramCredentials | null> {
    const row = await this.row(user);
    if (!row || row.disabled) return null;
    if (row.scram_sha256) return parseScramCredentials(row.scram_sha256);
    const stored = parseStoredPassword(row.password);
    if (stored.kind !== 'plain') return null;
    const salt = createHash('sha256').update(`postern-scram-salt\0${user}`).digest().subarray(0, 16);
    return makeScramCredentials(stored.value, { iterations: 4096, salt });
  }

  async lookup(user: string): Promise<Principal | null> {
    const row = await this.row(user);
    return row ? this.principalOf(row) : null;
  }

  async quotaOf(user: string): Promise<Quota> {
    const row = await this.row(user);
    const quota = row ? this.principalOf(row).settings?.quota : undefined;
    return { bytes: quota?.bytes ?? this.defaults.bytes, messages: quota?.messages ?? this.defaults.messages };
  }

  /** The principal of a row, its setting columns parsed (a value that cannot be used is logged and ignored). */
  private principalOf(row: UserRow): Principal {
    const columns = USER_SETTING_FIELDS.flatMap((f): [string, string][] =>
      row[f] === null ? [] : [[f, String(row[f])]],
    );
    const { settings, problems } = parseUserSettings(columns);
    for (const p of problems) this.logger.warn({ user: row.name, field: p.field }, `users table: ${p.message}`);
    const principal = { user: row.name, mailboxId: row.mailbox_id };
    return settings ? { ...principal, settings } : principal;
  }

  private async dummyVerify(password: string): Promise<void> {
    try {
      await this.argon2Verify(await dummyArgon2Hash(), password);
    } catch {
      // Only its cost matters.
    }
  }

  // ------------------------------------------------------------------ administration (postern user …)

  async listUsers(): Promise<UserSummary[]> {
    const r = await this.pool.query<UserRow>('select * from users order by name');
    return r.rows.map((row, i) => {
      const stored = parseStoredPassword(row.password);
      return {
        name: row.name,
        lineNo: i + 1,
        scheme: stored.scheme,
        mailboxId: row.mailbox_id,
        hasSharedSecret: row.apop_secret !== null,
        problem: row.disabled ? 'disabled' : stored.problem,
      };
    });
  }

  async addUser(
    name: string,
    password: string,
    opts: { apopSecret?: string; mailboxId?: string; quota?: Partial<Quota>; scramIterations?: number } = {},
  ): Promise<void> {
    checkName(name);
    checkPassword(password);
    const mailboxId = opts.mailboxId ?? name;
    assertMailboxId(mailboxId);
    const hash = await hashPassword(password);
    const r = await this.pool.query(
      `insert into users (name, mailbox_id, password, scram_sha256, apop_secret, quota_bytes, quota_messages)
       values ($1, $2, $3, $4, $5, $6, $7) on conflict (name) do nothing`,
      [
        name,
        mailboxId,
        hash,
        scramOf(password, opts.scramIterations),
        opts.apopSecret ?? null,
        opts.quota?.bytes ?? null,
        opts.quota?.messages ?? null,
      ],
    );
    if (r.rowCount !== 1) throw new PasswdFileError('USER_EXISTS', `user ${JSON.stringify(name)} already exists`);
  }

  /** New password; the APOP secret follows it (omitted: replaced only if there was one; null: removed). */
  async setPassword(
    name: string,
    password: string,
    opts: { apopSecret?: string | null; scramIterations?: number } = {},
  ): Promise<void> {
    checkName(name);
    checkPassword(password);
    const hash = await hashPassword(password);
    const r = await this.pool.query(
      `update users set password = $2, scram_sha256 = $3,
         apop_secret = case when $4 then $5 when apop_secret is null then null else $6 end
       where name = $1`,
      [
        name,
        hash,
        scramOf(password, opts.scramIterations),
        opts.apopSecret !== undefined,
        opts.apopSecret ?? null,
        password,
      ],
    );
    if (r.rowCount !== 1) throw new PasswdFileError('NO_SUCH_USER', `no user ${JSON.stringify(name)}`);
  }

  async deleteUser(name: string): Promise<void> {
    checkName(name);
    const r = await this.pool.query('delete from users where name = $1', [name]);
    if (r.rowCount !== 1) throw new PasswdFileError('NO_SUCH_USER', `no user ${JSON.stringify(name)}`);
  }
}

function scramOf(password: string, iterations = SCRAM_DEFAULT_ITERATIONS): string {
  return encodeScramCredentials(makeScramCredentials(password, { iterations }));
}

function checkName(name: string): void {
  const problem = userNameProblem(name);
  if (problem) throw new PasswdFileError('INVALID_NAME', problem);
}

function checkPassword(password: string): void {
  const problem = passwordProblem(password);
  if (problem) throw new PasswdFileError('INVALID_PASSWORD', problem);
}
