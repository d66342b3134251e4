/**
 * Users from a passwd file compatible with Dovecot's passwd-file (format: passwd-format.ts; schemes:
 * schemes.ts; changes: passwd-edit.ts, re-exported here).
 *
 * User names are compared exactly — byte for byte, case-sensitive, no Unicode normalisation (names.ts).
 *
 * The file is re-read when it changes: before each lookup the authenticator stats it (one cheap syscall
 * next to a password hash) and reloads when its inode, size, mtime or ctime moved, as Dovecot does. So
 * `postern user add` takes effect without a restart. A file that cannot be read or parsed on reload leaves
 * the previous users in place and logs a warning. A missing file means no users (and a warning), so a fresh
 * install can start the server before adding the first user.
 */
import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { timingSafeEqualStrings } from './compare.ts';
import { CredentialCache, type CredentialCacheOptions } from './credential-cache.ts';
import { userNameProblem } from './names.ts';
import { SCRAM_FIELD } from './passwd-edit.ts';
import { readPasswdFile, stampOf } from './passwd-file.ts';
import type { PasswdEntry, PasswdIssue } from './passwd-format.ts';
import { makeScramCredentials, parseScramCredentials, SCRAM_DEFAULT_ITERATIONS } from './sasl/scram.ts';
import type { ScramCredentials } from './sasl/types.ts';
import { type Argon2Verify, defaultArgon2Verify, dummyArgon2Hash, verifyStoredPassword } from './schemes.ts';
import type { Authenticator, AuthLogger, Principal } from './types.ts';
import { overridesPolicy } from './user-settings.ts';

export {
  type AddUserOptions,
  addUser,
  deleteUser,
  listUsers,
  MAX_PASSWORD_BYTES,
  type PasswdErrorCode,
  PasswdFileError,
  passwordProblem,
  type SetPasswordOptions,
  setPassword,
  type UserSummary,
} from './passwd-edit.ts';
export type { PasswdIssue } from './passwd-format.ts';
export type { Authenticator, AuthLogger, Principal } from './types.ts';

export interface PasswdFileOptions {
  /** Where warnings go (unusable entries, failed reloads, refused logins of known users). */
  readonly logger?: AuthLogger;
  /** Stat the file before each lookup and reload it when it changed (default true). */
  readonly autoReload?: boolean;
  /** argon2 verification; tests wrap the default to count calls. */
  readonly argon2Verify?: Argon2Verify;
  /**
   * The cache of verified credentials (credential-cache.ts); default 10 000 entries for an hour. Cleared
   * whenever the file changes or is reloaded.
   */
  readonly cache?: CredentialCacheOptions;
  /** Called on each cache lookup of a known user's password (a metric). */
  readonly onCacheLookup?: (result: 'hit' | 'miss') => void;
  /**
   * `auth.scram_iterations`: the count SCRAM keys derived from {PLAIN} passwords get, and the count unknown
   * users are announced with (so users whose stored keys have another count are warned about at load).
   */
  readonly scramIterations?: number;
}

/** Defaults of the credential cache (config keys auth.cache_size and auth.cache_ttl). */
export const CREDENTIAL_CACHE_DEFAULTS = { maxEntries: 10_000, ttlMs: 3_600_000 } as const;

const silent: AuthLogger = { warn() {} };

interface Snapshot {
  readonly users: ReadonlyMap<string, PasswdEntry>;
  readonly issues: readonly PasswdIssue[];
  /** Identity of the file version read; null when the file was missing. */
  readonly stamp: string | null;
}

export class PasswdFileAuthenticator implements Authenticator {
  private snapshot: Snapshot = { users: new Map(), issues: [], stamp: null };
  private inflight: Promise<void> | null = null;
  private failedStamp: string | null = null;
  private readonly logger: AuthLogger;
  private readonly autoReload: boolean;
  private readonly argon2Verify: Argon2Verify;
  /** Verified credentials (never a password, never a failure). */
  readonly cache: CredentialCache;
  private readonly onCacheLookup: ((result: 'hit' | 'miss') => void) | undefined;
  private readonly scramIterations: number;
  /** SCRAM keys derived from {PLAIN} passwords (PBKDF2 is costly); per entry, so a reload drops them. */
  private readonly derivedScram = new WeakMap<PasswdEntry, ScramCredentials>();

  private constructor(
    readonly path: string,
    opts: PasswdFileOptions,
  ) {
    this.logger = opts.logger ?? silent;
    this.autoReload = opts.autoReload ?? true;
    this.argon2Verify = opts.argon2Verify ?? defaultArgon2Verify;
    this.cache = new CredentialCache(opts.cache ?? CREDENTIAL_CACHE_DEFAULTS);
    this.onCacheLookup = opts.onCacheLookup;
    this.scramIterations = opts.scramIterations ?? SCRAM_DEFAULT_ITERATIONS;
  }

  /** Reads the file. Throws when it exists but cannot be read or is not UTF-8. */
  static async load(path: string, opts: PasswdFileOptions = {}): Promise<PasswdFileAuthenticator> {
    const auth = new PasswdFileAuthenticator(path, opts);
    await Promise.all([auth.reload(), dummyArgon2Hash()]);
    return auth;
  }

  /** Re-reads the file now. On failure the previous users stay and the error is thrown. */
  async reload(): Promise<void> {
    // Whatever the outcome, nothing verified against an earlier version of the file is trusted any more.
    this.cache.clear();
    const parsed = await readPasswdFile(this.path);
    if (parsed === null) {
      this.logger.warn({ path: this.path }, 'users file does not exist: no user can log in');
      this.snapshot = { users: new Map(), issues: [], stamp: null };
      return;
    }
    this.snapshot = { users: parsed.users, issues: parsed.issues, stamp: parsed.stamp };
    // The line's number, never its text: a malformed line may hold a password (and `line` is redacted).
    for (const issue of parsed.issues) {
      this.logger.warn({ path: this.path, lineNo: issue.lineNo, user: issue.user }, issue.message);
    }
    const odd = [...parsed.users.values()].filter((e) => {
      const n = scramIterationsOf(e);
      return n !== null && n !== this.scramIterations;
    });
    if (odd.length > 0) {
      this.logger.warn(
        { path: this.path, users: odd.map((e) => e.name), iterations: this.scramIterations },
        'SCRAM keys with another iteration count than auth.scram_iterations: SCRAM tells these users apart from unknown ones until their password is set again',
      );
    }
  }

  /** What the last successful read found wrong (for `postern config check` and the like). */
  get issues(): readonly PasswdIssue[] {
    return this.snapshot.issues;
  }

  /**
   * Cost model (README, "Login"): an unknown user, a refused user and a wrong password each pay one argon2id
   * verification with the parameters Postern writes (a dummy one where the stored hash is not argon2id), so
   * none of them answers sooner than another. A right password answers as soon as it is known to be right:
   * at once for `{PLAIN}` (one timing-safe compare), from the credential cache for a password verified within
   * the TTL, otherwise after its own verification. Only a caller who already sent the right password ever sees
   * a faster answer, and it tells them nothing the `+OK` does not.
   */
  async verifyPassword(user: string, password: string): Promise<Principal | null> {
    await this.refresh();
    const entry = this.entryOf(user);
    const refusal = entry ? (entry.blocked ?? entry.password.problem) : null;
    const principal = entry && refusal === null ? principalOf(entry) : null;
    if (!entry || refusal !== null || principal === null) {
      await this.dummyVerify(password);
      if (entry && refusal !== null) this.logger.warn({ path: this.path, user }, `login refused: ${refusal}`);
      return null; // principal null with no refusal is not reached: an invalid mailbox= also sets `blocked`
    }
    const stored = entry.password;
    if (stored.kind === 'plain') {
      if (timingSafeEqualStrings(stored.value, password)) return principal;
      await this.dummyVerify(password);
      return null;
    }
    const key = this.cache.enabled ? this.cache.keyOf(user, password) : null;
    if (key !== null) {
      const hit = this.cache.has(key);
      this.onCacheLookup?.(hit ? 'hit' : 'miss');
      if (hit) return principal;
    }
    // Schemes other than argon2id may verify faster than it: pay the argon2id floor first.
    if (stored.kind !== 'argon2') await this.dummyVerify(password);
    const snapshot = this.snapshot;
    let ok: boolean;
    try {
      ok = await verifyStoredPassword(stored, password, this.argon2Verify);
    } catch (err) {
      this.logger.warn({ path: this.path, user, err: String(err) }, 'password verification failed');
      return null;
    }
    if (!ok) return null;
    // Only if the file was not re-read meanwhile: the password may have changed under the verification.
    if (key !== null && this.snapshot === snapshot) this.cache.add(key);
    return principal;
  }

  async sharedSecret(user: string): Promise<string | null> {
    await this.refresh();
    return this.entryOf(user)?.sharedSecret ?? null;
  }

  /**
   * SCRAM-SHA-256 keys: from the `scram_sha256=` field that `postern user add`/`passwd` write, or derived
   * from a {PLAIN} password (with a salt fixed per user, so repeated attempts look alike). Null otherwise.
   */
  async scramCredentials(user: string): Promise<ScramCredentials | null> {
    await this.refresh();
    const entry = this.entryOf(user);
    if (!entry || entry.blocked !== null) return null;
    const stored = storedScram(entry);
    if (stored !== undefined) return stored;
    const plain = entry.password.scheme === 'PLAIN' || entry.password.scheme === 'CLEAR' ? entry.password.value : null;
    if (plain === null) return null;
    let derived = this.derivedScram.get(entry);
    if (!derived) {
      const salt = createHash('sha256').update(`postern-scram-salt\0${user}`).digest().subarray(0, 16);
      derived = makeScramCredentials(plain, { iterations: this.scramIterations, salt });
      this.derivedScram.set(entry, derived);
    }
    return derived;
  }

  /** Answers from the file as last read (no stat): the server asks this for every greeting. */
  hasSharedSecrets(): boolean {
    return this.fileFlags().sharedSecrets;
  }

  hasPolicyOverrides(): boolean {
    return this.fileFlags().policyOverrides;
  }

  /**
   * Both answers above, worked out once per version of the file: asked at every greeting (APOP) and CAPA, a
   * walk over every user each time cost a file of 100 000 argon2id users (no shared secret to stop at) a
   * loop of 100 000 per connection.
   */
  private fileFlags(): { readonly sharedSecrets: boolean; readonly policyOverrides: boolean } {
    if (this.flags?.of !== this.snapshot) {
      let sharedSecrets = false;
      let policyOverrides = false;
      for (const entry of this.snapshot.users.values()) {
        sharedSecrets ||= entry.sharedSecret !== null;
        policyOverrides ||= overridesPolicy(entry.settings);
        if (sharedSecrets && policyOverrides) break;
      }
      this.flags = { of: this.snapshot, sharedSecrets, policyOverrides };
    }
    return this.flags;
  }

  private flags: { of: Snapshot; sharedSecrets: boolean; policyOverrides: boolean } | undefined;

  async lookup(user: string): Promise<Principal | null> {
    await this.refresh();
    const entry = this.entryOf(user);
    return entry ? principalOf(entry) : null;
  }

  private entryOf(user: string): PasswdEntry | undefined {
    // Anything that is not a valid name cannot be in the map; the check also keeps odd input out of logs.
    if (userNameProblem(user) !== null) return undefined;
    return this.snapshot.users.get(user);
  }

  private async dummyVerify(password: string): Promise<void> {
    try {
      await this.argon2Verify(await dummyArgon2Hash(), password);
    } catch {
      // Only its cost matters.
    }
  }

  /** Reloads when the file changed since it was read. Concurrent callers share one stat and one reload. */
  private refresh(): Promise<void> {
    if (!this.autoReload) return Promise.resolve();
    this.inflight ??= this.refreshNow().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async refreshNow(): Promise<void> {
    let current: string | null;
    try {
      // Synchronous: one stat of a local file takes microseconds, a trip through the thread pool costs a thread
      // wake-up on every login.
      current = stampOf(statSync(this.path));
    } catch {
      current = null;
    }
    if (current === this.snapshot.stamp || current === this.failedStamp) return;
    this.cache.clear();
    try {
      await this.reload();
      this.failedStamp = null;
    } catch (err) {
      // Warn once per broken version of the file, not once per login.
      this.failedStamp = current;
      this.logger.warn({ path: this.path, err: String(err) }, 'users file reload failed; keeping the previous users');
    }
  }
}

function principalOf(entry: PasswdEntry): Principal | null {
  if (entry.mailboxId === null) return null;
  const principal = { user: entry.name, mailboxId: entry.mailboxId };
  return entry.settings ? { ...principal, settings: entry.settings } : principal;
}

/** The user's `scram_sha256=` keys: undefined without the field, null when it is malformed. */
function storedScram(entry: PasswdEntry): ScramCredentials | null | undefined {
  const token = entry.extra.find((t) => t.startsWith(`${SCRAM_FIELD}=`));
  return token === undefined ? undefined : parseScramCredentials(token.slice(SCRAM_FIELD.length + 1));
}

/** The iteration count of a user's stored SCRAM keys, or null without (valid) keys. */
function scramIterationsOf(entry: PasswdEntry): number | null {
  return storedScram(entry)?.iterations ?? null;
}
