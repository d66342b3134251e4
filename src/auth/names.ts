/**
 * User names and mailbox ids.
 *
 * A user name is UTF-8 (RFC 6856 lets POP3 carry UTF-8 user names once `UTF8` is enabled), 1–255 bytes, and
 * contains no `:` (the passwd-file field separator), no whitespace, no control character (C0, DEL, C1), no
 * NUL, no `/` or `\`, and is not `.` or `..`. The last rules are ours, not Dovecot's: a user's mailbox id
 * defaults to the user name, and a store may use the mailbox id as a path component, so a name must never
 * be able to climb out of the mail directory. A user name also may not start with `#`: the passwd-file line
 * would read as a comment (the user could never log in, be listed or be deleted, and every retried
 * `postern user add` would append another dead line).
 *
 * Names are compared exactly: byte for byte, case-sensitive, without Unicode normalisation. `Alice` and
 * `alice` are two users, and so are the NFC and NFD spellings of `José`. Dovecot compares the same way unless
 * told to fold case, so a file imported from Dovecot keeps its meaning.
 */

const MAX_NAME_BYTES = 255;

/** Whitespace and control characters anywhere in the string (Unicode White_Space, C0, DEL, C1). */
/** With the `u` flag, a surrogate range only matches a surrogate that is not half of a pair. */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

const FORBIDDEN = /[\s\u0000-\u001f\u007f-\u009f:/\\]/u;

/** Why `name` is not a valid user name, or null when it is. */
export function userNameProblem(name: string): string | null {
  // '#' starts a comment in the passwd file (Dovecot's db-passwd-file.c); ':' is excluded by idProblem.
  if (name.startsWith('#')) return "user name may not start with '#' (the users file would read it as a comment)";
  return idProblem(name, 'user name');
}

/** Why `id` is not a valid mailbox id (the `mailbox=` extra field), or null when it is. Same rules as names. */
export function mailboxIdProblem(id: string): string | null {
  return idProblem(id, 'mailbox id');
}

export function isValidUserName(name: string): boolean {
  return userNameProblem(name) === null;
}

function idProblem(s: string, what: string): string | null {
  if (s.length === 0) return `${what} is empty`;
  // A lone surrogate cannot be encoded as UTF-8; Buffer.byteLength would silently count U+FFFD instead.
  if (LONE_SURROGATE.test(s)) return `${what} is not valid Unicode`;
  if (Buffer.byteLength(s, 'utf8') > MAX_NAME_BYTES) return `${what} is longer than ${MAX_NAME_BYTES} bytes`;
  if (FORBIDDEN.test(s)) return `${what} contains ':', '/', '\\', whitespace or a control character`;
  if (s === '.' || s === '..') return `${what} may not be '.' or '..'`;
  return null;
}
