/**
 * Stored password strings, Dovecot style: `{SCHEME}value`, or a bare crypt string recognised by its prefix.
 *
 * Postern writes only `{ARGON2ID}` (design.md §8). It verifies what an imported Dovecot file may hold:
 *
 * | scheme                         | value                 | verified with                               |
 * |--------------------------------|-----------------------|---------------------------------------------|
 * | ARGON2ID, ARGON2I              | `$argon2id$…`, `$argon2i$…` | argon2.verify (any params, e.g. Dovecot's m=65536,t=3) |
 * | SHA512-CRYPT, SHA256-CRYPT     | `$6$…`, `$5$…`        | unixcrypt, on a worker thread (sha-crypt.ts) |
 * | BLF-CRYPT                      | `$2y$`, `$2b$`, `$2a$` | bcryptjs (which knows `$2y$`; only the first 72 bytes of a password count, as in every bcrypt) |
 * | CRYPT                          | any of the crypt strings above | by its prefix; DES and MD5-crypt are refused |
 * | PLAIN, CLEAR                   | the password itself   | timingSafeEqualStrings (compare.ts)          |
 *
 * Anything else (CRAM-MD5, SSHA512, MD5-CRYPT, PBKDF2, …) parses, but the user cannot log in with a password;
 * `problem` says why, so the file loader can log it and `postern user list` can show it.
 */
import { randomBytes } from 'node:crypto';
import * as argon2 from 'argon2';
import bcrypt from 'bcryptjs';
import { timingSafeEqualStrings } from './compare.ts';
import { shaCryptProblem, verifyShaCrypt } from './sha-crypt.ts';

/**
 * The parameters Postern hashes with: argon2id, 19 MiB, 2 passes, 1 lane — OWASP's Password Storage Cheat
 * Sheet minimum for argon2id. Stronger stored parameters still verify (argon2.verify reads them from the hash).
 */
export const ARGON2_PARAMS = {
  type: argon2.argon2id,
  memoryCost: 19456,
  timeCost: 2,
  parallelism: 1,
} as const;

/** What verification runs for a stored password. */
export type PasswordKind = 'argon2' | 'sha-crypt' | 'bcrypt' | 'plain' | 'unusable';

export interface StoredPassword {
  /** The scheme, upper-case: as written in `{…}`, or detected from a bare value; `''` when unknown. */
  readonly scheme: string;
  /** The value after the `{SCHEME}` prefix. */
  readonly value: string;
  readonly kind: PasswordKind;
  /** Why no password can ever verify against this (kind `unusable`), or null. */
  readonly problem: string | null;
}

/** argon2.verify's shape; injectable so tests can count calls. */
export type Argon2Verify = (digest: string, password: string) => Promise<boolean>;

export const defaultArgon2Verify: Argon2Verify = (digest, password) => argon2.verify(digest, password);

// PHC string as written by libargon2, node-argon2 and Dovecot: $argon2id$v=19$m=…,t=…,p=…$salt$hash
// (parameter order varies between writers; node-argon2 parses them by name).
const ARGON2_PHC =
  /^\$(argon2id|argon2i)\$(?:v=\d+\$)?[mtp]=\d+,[mtp]=\d+,[mtp]=\d+(?:,data=[A-Za-z0-9+/]*)?\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/;
const BCRYPT = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** Parses the password field of a passwd-file line. Never throws. */
export function parseStoredPassword(field: string): StoredPassword {
  if (field === '') return unusable('', '', 'no password is set');
  const m = /^\{([^{}]*)\}/.exec(field);
  if (m) return forScheme(m[1].toUpperCase(), field.slice(m[0].length));
  const detected = detectScheme(field);
  if (detected === '') {
    return unusable('', field, 'password has no {SCHEME} prefix and is not a recognised crypt string');
  }
  return forScheme(detected, field);
}

/** Recognises a bare crypt string by its prefix; `''` when it is none we know. */
function detectScheme(value: string): string {
  if (value.startsWith('$argon2id$')) return 'ARGON2ID';
  if (value.startsWith('$argon2i$')) return 'ARGON2I';
  if (value.startsWith('$6$')) return 'SHA512-CRYPT';
  if (value.startsWith('$5$')) return 'SHA256-CRYPT';
  if (/^\$2[aby]\$/.test(value)) return 'BLF-CRYPT';
  if (value.startsWith('$1$')) return 'MD5-CRYPT';
  return '';
}

function forScheme(scheme: string, value: string): StoredPassword {
  const ok = (kind: PasswordKind): StoredPassword => ({ scheme, value, kind, problem: null });
  switch (scheme) {
    case 'ARGON2ID':
    case 'ARGON2I': {
      const m = ARGON2_PHC.exec(value);
      if (!m) return unusable(scheme, value, `malformed {${scheme}} hash`);
      if (m[1].toUpperCase() !== scheme) return unusable(scheme, value, `{${scheme}} holds a $${m[1]}$ hash`);
      return ok('argon2');
    }
    case 'SHA512-CRYPT':
    case 'SHA256-CRYPT': {
      const want = scheme === 'SHA512-CRYPT' ? '$6$' : '$5$';
      if (!value.startsWith(want)) return unusable(scheme, value, `{${scheme}} value does not start with ${want}`);
      const problem = shaCryptProblem(value);
      return problem ? unusable(scheme, value, problem) : ok('sha-crypt');
    }
    case 'BLF-CRYPT':
      return BCRYPT.test(value) ? ok('bcrypt') : unusable(scheme, value, 'malformed {BLF-CRYPT} hash');
    case 'CRYPT': {
      // Dovecot's CRYPT is whatever crypt(3) understands; we take the modern prefixes and refuse the rest.
      const detected = detectScheme(value);
      if (['SHA512-CRYPT', 'SHA256-CRYPT', 'BLF-CRYPT'].includes(detected)) {
        const inner = forScheme(detected, value);
        return { ...inner, scheme };
      }
      return unusable(scheme, value, '{CRYPT} value is DES or MD5-crypt, which Postern does not verify');
    }
    case 'PLAIN':
    case 'CLEAR':
      return value === '' ? unusable(scheme, value, `{${scheme}} password is empty`) : ok('plain');
    case 'CRAM-MD5':
      return unusable(
        scheme,
        value,
        '{CRAM-MD5} stores an HMAC-MD5 state that cannot check a plaintext password; ' +
          'set a new password with `postern user passwd`',
      );
    default:
      return unusable(scheme, value, `password scheme {${scheme}} is not supported; set a new password`);
  }
}

function unusable(scheme: string, value: string, problem: string): StoredPassword {
  return { scheme, value, kind: 'unusable', problem };
}

/**
 * True when `password` matches. Throws only on an internal failure (argon2 binding, worker thread); the
 * caller turns that into a failed login and a log line. An `unusable` password never matches.
 */
export async function verifyStoredPassword(
  stored: StoredPassword,
  password: string,
  argon2Verify: Argon2Verify = defaultArgon2Verify,
): Promise<boolean> {
  switch (stored.kind) {
    case 'argon2':
      return argon2Verify(stored.value, password);
    case 'sha-crypt':
      return verifyShaCrypt(stored.value, password);
    case 'bcrypt':
      return bcrypt.compare(password, stored.value);
    case 'plain':
      return timingSafeEqualStrings(stored.value, password);
    case 'unusable':
      return false;
  }
}

/** The plaintext of a {PLAIN}/{CLEAR} password, or null. */
export function plaintextOf(stored: StoredPassword): string | null {
  return stored.kind === 'plain' ? stored.value : null;
}

/** `{ARGON2ID}$argon2id$v=19$m=19456,t=2,p=1$…` for `password`. */
export async function hashPassword(password: string): Promise<string> {
  return `{ARGON2ID}${canonicalArgon2(await argon2.hash(password, ARGON2_PARAMS))}`;
}

/**
 * Writes the parameters in the reference order `m=…,t=…,p=…`. The argon2 package emits `m,p,t`, which it
 * verifies itself but Dovecot (libargon2's decoder) refuses, so a user file could not move back to Dovecot.
 */
export function canonicalArgon2(encoded: string): string {
  return encoded.replace(/\$m=(\d+),p=(\d+),t=(\d+)\$/, '$m=$1,t=$3,p=$2$');
}

let dummy: Promise<string> | null = null;

/**
 * An argon2id hash made with ARGON2_PARAMS of a random password nobody knows. Verifying against it costs
 * what a real login costs, which is how an unknown user is made to look like a wrong password.
 */
export function dummyArgon2Hash(): Promise<string> {
  if (!dummy) {
    dummy = argon2.hash(randomBytes(32).toString('base64'), ARGON2_PARAMS);
    dummy.catch(() => {
      dummy = null;
    });
  }
  return dummy;
}
