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
import type { Stats } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import { userNameProblem } from './names.ts';
import { SCRAM_FIELD } from './passwd-edit.ts';
import { decodePasswd, type PasswdEntry, type PasswdIssue, parsePasswd } from './passwd-format.ts';
import { makeScramCredentials, parseScramCredentials } from './sasl/scram.ts';
import type { ScramCredentials } from './sasl/types.ts';
import { type Argon2Verify, defaultArgon2Verify, dummyArgon2Hash, verifyStoredPassword } from './schemes.ts';
import type { Authenticator, AuthLogger, Principal } from './types.ts';

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
}

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

  private constructor(
    readonly path: string,
    opts: PasswdFileOptions,
  ) {
    this.logger = opts.logger ?? silent;
    this.autoReload = opts.autoReload ?? true;
    this.argon2Verify = opts.argon2Verify ?? defaultArgon2Verify;
  }

  /** Reads the file. Throws when it exists but cannot be read or is not UTF-8. */
  static async load(path: string, opts: PasswdFileOptions = {}): Promise<PasswdFileAuthenticator> {
    const auth = new PasswdFileAuthenticator(path, opts);
    await Promise.all([auth.reload(), dummyArgon2Hash()]);
    return auth;
  }

  /** Re-reads the file now. On failure the previous users stay and the error is thrown. */
  async reload(): Promise<void> {
    let stats: Stats;
    let bytes: Buffer;
    let fh: FileHandle;
    try {
      fh = await open(this.path, 'r');
    } catch (err) {
      if (!(err instanceof Error && 'code' in err && err.code === 'ENOENT')) throw err;
      this.logger.warn({ path: this.path }, 'users file does not exist: no user can log in');
      this.snapshot = { users: new Map(), issues: [], stamp: null };
      return;
    }
    try {
      // The stamp comes from the same open file as the bytes, so it can never claim a newer version than
      // what was read (a later change then always triggers a reload).
      stats = await fh.stat();
      bytes = await fh.readFile();
    } finally {
      await fh.close();
    }
    const parsed = parsePasswd(decodePasswd(bytes, this.path));
    this.snapshot = { users: parsed.users, issues: parsed.issues, stamp: stampOf(stats) };
    for (const issue of parsed.issues) {
      this.logger.warn({ path: this.path, line: issue.lineNo, user: issue.user }, issue.message);
    }
  }

  /** What the last successful read found wrong (for `postern config check` and the like). */
  get issues(): readonly PasswdIssue[] {
    return this.snapshot.issues;
  }

  async verifyPassword(user: string, password: string): Promise<Principal | null> {
    await this.refresh();
    const entry = this.entryOf(user);
    const refusal = entry ? (entry.blocked ?? entry.password.problem) : null;
    // Every attempt costs at least one argon2 verification with the parameters Postern writes, so neither an
    // unknown user nor a user with a fast legacy scheme ({PLAIN}) answers sooner than a wrong argon2 password.
    if (!entry || refusal !== null || entry.password.kind !== 'argon2') await this.dummyVerify(password);
    if (!entry) return null;
    if (refusal !== null) {
      this.logger.warn({ path: this.path, user }, `login refused: ${refusal}`);
      return null;
    }
    const principal = principalOf(entry);
    if (!principal) return null; // not reached: an invalid mailbox= also sets `blocked`
    try {
      return (await verifyStoredPassword(entry.password, password, this.argon2Verify)) ? principal : null;
    } catch (err) {
      this.logger.warn({ path: this.path, user, err: String(err) }, 'password verification failed');
      return null;
    }
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
    const token = entry.extra.find((t) => t.startsWith(`${SCRAM_FIELD}=`));
    if (token) return parseScramCredentials(token.slice(SCRAM_FIELD.length + 1));
    const plain = entry.password.scheme === 'PLAIN' || entry.password.scheme === 'CLEAR' ? entry.password.value : null;
    if (plain === null) return null;
    const salt = createHash('sha256').update(`postern-scram-salt\0${user}`).digest().subarray(0, 16);
    return makeScramCredentials(plain, { iterations: 4096, salt });
  }

  /** Answers from the file as last read (no stat): the server asks this for every greeting. */
  hasSharedSecrets(): boolean {
    for (const entry of this.snapshot.users.values()) if (entry.sharedSecret !== null) return true;
    return false;
  }

  hasPolicyOverrides(): boolean {
    for (const entry of this.snapshot.users.values()) {
      if (entry.extra.some((t) => t.startsWith('login_delay=') || t.startsWith('expire='))) return true;
    }
    return false;
  }

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
      current = stampOf(await stat(this.path));
    } catch {
      current = null;
    }
    if (current === this.snapshot.stamp || current === this.failedStamp) return;
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

/** Extra fields that carry per-user policy (never secrets), exposed on the principal. */
export const POLICY_FIELDS = ['login_delay', 'expire', 'quota_bytes', 'quota_messages'] as const;

function principalOf(entry: PasswdEntry): Principal | null {
  if (entry.mailboxId === null) return null;
  const settings: Record<string, string> = {};
  for (const token of entry.extra) {
    const eq = token.indexOf('=');
    const key = eq < 0 ? token : token.slice(0, eq);
    if ((POLICY_FIELDS as readonly string[]).includes(key)) settings[key] = eq < 0 ? '' : token.slice(eq + 1);
  }
  const principal = { user: entry.name, mailboxId: entry.mailboxId };
  return Object.keys(settings).length > 0 ? { ...principal, settings } : principal;
}

function stampOf(s: Stats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeMs}:${s.ctimeMs}`;
}
