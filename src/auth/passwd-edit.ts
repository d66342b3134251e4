/**
 * Changes to a passwd file, for `postern user …`.
 *
 * Every change is a read-modify-write under a lock file (`<file>.lock`, created with O_EXCL), so two admin
 * commands running at once cannot lose each other's change. The new content is written to a temporary file
 * in the same directory (mode 0600), fsynced, and renamed over the old one, then the directory is fsynced: a
 * reader (the server) sees the old file or the new one, never half of one, and a crash leaves one of them.
 * Lines that are not ours (comments, blank lines, other users, unknown fields) are written back unchanged.
 *
 * Passwords are hashed with argon2id (schemes.ts) before the lock is taken, so the lock is held for
 * milliseconds.
 */

import type { Stats } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { writeFileAtomic } from '../durable/files.ts';
import { LockBusyError, LockFile } from '../durable/lockfile.ts';
import { CodedError } from './errors.ts';
import { userNameProblem } from './names.ts';
import {
  encodeSecret,
  formatUserLine,
  type ParsedPasswd,
  parsePasswd,
  parsePasswdBytes,
  replaceInLine,
} from './passwd-format.ts';
import { encodeScramCredentials, makeScramCredentials, SCRAM_DEFAULT_ITERATIONS } from './sasl/scram.ts';
import { hashPassword } from './schemes.ts';

/** How long a change waits for another writer's lock before giving up. */
export const LOCK_TIMEOUT_MS = 10_000;
/** A lock older than this is stale whoever holds it: a change takes milliseconds, never a minute. */
export const LOCK_STALE_MS = 60_000;
/** Longest password accepted: far more than any human types, small enough to bound hashing input. */
export const MAX_PASSWORD_BYTES = 1024;

export type PasswdErrorCode = 'USER_EXISTS' | 'NO_SUCH_USER' | 'INVALID_NAME' | 'INVALID_PASSWORD' | 'LOCKED';

/** A refused change, with a stable code for callers and a message fit to show an operator. */
export class PasswdFileError extends CodedError<PasswdErrorCode> {
  override readonly name = 'PasswdFileError';
}

/** Why `password` cannot be set, or null. It must be something a POP3 client can send. */
export function passwordProblem(password: string): string | null {
  if (password === '') return 'password is empty';
  if (/[\0\r\n]/.test(password)) return 'password contains NUL, CR or LF, which POP3 cannot carry';
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) {
    return `password is longer than ${MAX_PASSWORD_BYTES} bytes`;
  }
  return null;
}

export interface UserSummary {
  readonly name: string;
  readonly lineNo: number;
  /** The password scheme, e.g. `ARGON2ID`, `SHA512-CRYPT`; `''` when none could be recognised. */
  readonly scheme: string;
  /** Null when the line's `mailbox=` is invalid. */
  readonly mailboxId: string | null;
  /** True when the user can use APOP/CRAM-MD5. */
  readonly hasSharedSecret: boolean;
  /** Why this user cannot log in with a password, or null. */
  readonly problem: string | null;
}

/** The users of the file in file order (a missing file has none). Never includes a password or hash. */
export async function listUsers(path: string): Promise<UserSummary[]> {
  const { parsed } = await readPasswd(path);
  const out: UserSummary[] = [];
  for (const line of parsed.lines) {
    const e = line.entry;
    if (!e || parsed.users.get(e.name) !== e) continue;
    out.push({
      name: e.name,
      lineNo: line.lineNo,
      scheme: e.password.scheme,
      mailboxId: e.mailboxId,
      hasSharedSecret: e.sharedSecret !== null,
      problem: e.blocked ?? e.password.problem,
    });
  }
  return out;
}

export interface AddUserOptions {
  /**
   * Also store this secret for APOP and CRAM-MD5 (`apop_secret=`, base64). It is kept recoverable on disk,
   * which is what those mechanisms need and why it is optional.
   */
  readonly apopSecret?: string;
  /** PBKDF2 iterations of the SCRAM keys (`auth.scram_iterations`; default SCRAM_DEFAULT_ITERATIONS). */
  readonly scramIterations?: number;
  /**
   * Owner of the file when this call creates it as root (the server's user, so that the service can read
   * it); an existing file keeps its owner.
   */
  readonly newFileOwner?: { readonly uid: number; readonly gid: number };
}

/** Adds a user with an argon2id password. Creates the file (mode 0600) when missing. */
export async function addUser(path: string, name: string, password: string, opts: AddUserOptions = {}): Promise<void> {
  checkName(name);
  checkPassword(password, 'password');
  if (opts.apopSecret !== undefined) checkPassword(opts.apopSecret, 'APOP secret');
  // Fail fast, before spending time on the hash; checked again under the lock.
  if ((await readPasswd(path)).parsed.users.has(name)) throw exists(name);
  const hash = await hashPassword(password);
  const extra = [scramField(password, opts.scramIterations)];
  if (opts.apopSecret !== undefined) extra.push(`apop_secret=${encodeSecret(opts.apopSecret)}`);
  await modify(
    path,
    (parsed, lines) => {
      if (parsed.users.has(name)) throw exists(name);
      lines.push(formatUserLine(name, hash, extra));
    },
    opts.newFileOwner,
  );
}

export interface SetPasswordOptions {
  /**
   * The APOP/CRAM-MD5 secret after the change. Omitted: a user who had a shared secret (`apop_secret=` or a
   * {PLAIN} password) gets the new password as their secret, so the old password never stays valid through
   * APOP. A string: that secret. null: no shared secret any more.
   */
  readonly apopSecret?: string | null;
  /** PBKDF2 iterations of the new SCRAM keys (`auth.scram_iterations`; default SCRAM_DEFAULT_ITERATIONS). */
  readonly scramIterations?: number;
}

/** Sets a new argon2id password for an existing user, keeping the rest of the line. */
export async function setPassword(
  path: string,
  name: string,
  password: string,
  opts: SetPasswordOptions = {},
): Promise<void> {
  checkName(name);
  checkPassword(password, 'password');
  if (typeof opts.apopSecret === 'string') checkPassword(opts.apopSecret, 'APOP secret');
  if (!(await readPasswd(path)).parsed.users.has(name)) throw noSuchUser(name);
  const hash = await hashPassword(password);
  await modify(path, (parsed, lines) => {
    const entry = parsed.users.get(name);
    if (!entry) throw noSuchUser(name);
    const index = parsed.lines.findIndex((l) => l.entry === entry);
    const secret = opts.apopSecret === undefined ? (entry.sharedSecret === null ? null : password) : opts.apopSecret;
    const extra = entry.extra.filter(
      (t) => !t.startsWith('apop_secret=') && t !== 'apop_secret' && !t.startsWith(`${SCRAM_FIELD}=`),
    );
    extra.push(scramField(password, opts.scramIterations));
    if (secret !== null) extra.push(`apop_secret=${encodeSecret(secret)}`);
    lines[index] = keepCr(parsed.lines[index].raw, replaceInLine(entry, hash, extra));
  });
}

/** Removes a user: every line that names them, so a duplicate cannot come back to life. */
export async function deleteUser(path: string, name: string): Promise<void> {
  checkName(name);
  await modify(path, (parsed, lines) => {
    if (!parsed.users.has(name)) throw noSuchUser(name);
    const keep = parsed.lines.filter((l) => l.entry?.name !== name).map((l) => l.bytes ?? l.raw);
    lines.splice(0, lines.length, ...keep);
  });
}

/**
 * SCRAM-SHA-256 keys (RFC 5802/7677) kept beside the argon2id hash: a salted StoredKey and ServerKey from
 * which the password cannot be recovered, yet enough for the server side of SCRAM (a password hash that is
 * not SCRAM's own cannot be used for it).
 */
export const SCRAM_FIELD = 'scram_sha256';

function scramField(password: string, iterations = SCRAM_DEFAULT_ITERATIONS): string {
  const encoded = encodeScramCredentials(makeScramCredentials(password, { iterations }));
  return `${SCRAM_FIELD}=${encoded.slice(encoded.indexOf('}') + 1)}`;
}

function checkName(name: string): void {
  const problem = userNameProblem(name);
  if (problem) throw new PasswdFileError('INVALID_NAME', problem);
}

function checkPassword(password: string, what: string): void {
  const problem = passwordProblem(password);
  if (problem) throw new PasswdFileError('INVALID_PASSWORD', problem.replace(/^password/, what));
}

function exists(name: string): PasswdFileError {
  return new PasswdFileError('USER_EXISTS', `user ${JSON.stringify(name)} already exists`);
}

function noSuchUser(name: string): PasswdFileError {
  return new PasswdFileError('NO_SUCH_USER', `no user ${JSON.stringify(name)}`);
}

function keepCr(oldRaw: string, line: string): string {
  return oldRaw.endsWith('\r') ? `${line}\r` : line;
}

async function readPasswd(path: string): Promise<{ parsed: ParsedPasswd; stats: Stats | null }> {
  let bytes: Buffer;
  let stats: Stats | null;
  try {
    [bytes, stats] = await Promise.all([readFile(path), stat(path)]);
  } catch (err) {
    if (errno(err) !== 'ENOENT') throw err;
    return { parsed: parsePasswd(''), stats: null };
  }
  return { parsed: parsePasswdBytes(bytes), stats };
}

/**
 * Read-modify-write under the lock. `change` edits `lines` (the raw lines) in place, or throws. A line that is
 * not UTF-8 stays as its exact bytes (a Buffer), so no change ever rewrites a line it cannot read.
 */
async function modify(
  path: string,
  change: (parsed: ParsedPasswd, lines: (string | Buffer)[]) => void,
  newFileOwner?: { readonly uid: number; readonly gid: number },
): Promise<void> {
  try {
    await withLock(path, async () => {
      const { parsed, stats } = await readPasswd(path);
      const lines = parsed.lines.map((l) => l.bytes ?? l.raw);
      change(parsed, lines);
      const content = Buffer.concat(lines.flatMap((l) => [typeof l === 'string' ? Buffer.from(l) : l, NEWLINE]));
      await writeAtomically(path, content, stats, newFileOwner);
    });
  } catch (err) {
    if (err instanceof PasswdFileError || !(err instanceof Error)) throw err;
    // File system errors name the lock or temporary file; say which file the operator asked to change.
    throw new Error(`cannot update ${path}: ${err.message}`, { cause: err });
  }
}

const NEWLINE = Buffer.from('\n');

/**
 * Writes `content` to `path` through a temporary file and a rename. A new file gets mode 0600; an existing
 * one keeps its owner's and group's permission bits but never gains world access (a Dovecot setup may rely on
 * `0640 root:dovecot`). Run as root, the owner and group are kept too, so that `sudo postern user add` does
 * not leave a file the server's user can no longer read.
 */
async function writeAtomically(
  path: string,
  content: Buffer,
  old: Stats | null,
  newFileOwner?: { readonly uid: number; readonly gid: number },
): Promise<void> {
  const mode = old ? (old.mode & 0o660) | 0o600 : 0o600;
  const owner = process.getuid?.() === 0 ? (old ?? newFileOwner) : undefined;
  await writeFileAtomic(path, content, { mode, owner: owner && { uid: owner.uid, gid: owner.gid } });
}

/**
 * Runs `fn` holding `<path>.lock` (durable/lockfile.ts): a lock whose process is gone (same host) or that is
 * older than LOCK_STALE_MS is taken over, so a killed command does not block the next one forever.
 */
async function withLock<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const lockPath = `${path}.lock`;
  let lock: LockFile;
  try {
    lock = await LockFile.acquire(lockPath, { waitMs: LOCK_TIMEOUT_MS, staleMs: LOCK_STALE_MS });
  } catch (err) {
    if (!(err instanceof LockBusyError)) throw err;
    throw new PasswdFileError('LOCKED', `${path} is locked by another change (${lockPath}); try again later`);
  }
  try {
    return await fn();
  } finally {
    await lock.release();
  }
}

function errno(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}
