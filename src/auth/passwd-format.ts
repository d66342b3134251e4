/**
 * The passwd-file format, as Dovecot reads it (its `db-passwd-file.c`):
 *
 *     user:password:uid:gid:gecos:home:shell:extra_fields
 *
 * - Lines that are empty, blank, start with `#` or start with `:` are not users; they are kept verbatim when
 *   the file is rewritten.
 * - Only the user is required: `alice:{PLAIN}secret` is a complete line; a line without a password field is a
 *   user who cannot log in. uid, gid, gecos, home and shell are kept but not used by Postern.
 * - extra_fields is everything after the seventh `:` (so it may itself contain `:`), split on spaces into
 *   `key=value` or bare `key` tokens.
 * - When a user appears twice, the first line counts (as in Dovecot) and the later one is reported.
 *
 * Extra fields Postern reads:
 * - `mailbox=ID`: the mailbox id of the user (default: the user name); validated like a user name.
 * - `apop_secret=BASE64`: the APOP/CRAM-MD5 shared secret, base64 of its UTF-8 bytes (base64 so that it can
 *   hold `:` and spaces). Dovecot ignores this field.
 * - `nologin`, `noauthenticate`, `nopassword`, `allow_nets=`, `allow_real_nets=`: Dovecot passdb fields that
 *   restrict or loosen a login in ways Postern does not implement. Rather than let such a user in more
 *   easily than Dovecot would, Postern refuses every login for them and says why (fail closed). Delivery to
 *   them still works.
 * Every other field (userdb_*, quota_rule, …) is kept and ignored.
 */
import { mailboxIdProblem, userNameProblem } from './names.ts';
import { parseStoredPassword, plaintextOf, type StoredPassword } from './schemes.ts';
import { extraFieldPairs, parseUserSettings, type UserSettingProblem, type UserSettings } from './user-settings.ts';

/**
 * One line of the file, as read. `raw` is the exact text, without its `\n`, used when rewriting; a line that
 * is not UTF-8 has `raw` empty and its exact bytes in `bytes`, so a rewrite keeps it byte for byte.
 */
export interface PasswdLine {
  readonly raw: string;
  readonly bytes?: Buffer;
  /** 1-based line number. */
  readonly lineNo: number;
  /** The parsed user, or null for comments, blank lines and other non-user lines. */
  readonly entry: PasswdEntry | null;
}

export interface PasswdEntry {
  readonly name: string;
  /** All `:`-separated fields of the line, the user name first; the last may hold `:` (extra fields). */
  readonly fields: readonly string[];
  readonly password: StoredPassword;
  /** The extra-field tokens in order (`key=value` or `key`). */
  readonly extra: readonly string[];
  /** The mailbox id (from `mailbox=` or the user name); null when `mailbox=` is invalid. */
  readonly mailboxId: string | null;
  /** The APOP/CRAM-MD5 secret from `apop_secret=` or a {PLAIN}/{CLEAR} password; null when none. */
  readonly sharedSecret: string | null;
  /** Why this user cannot log in by any method (bad name, bad mailbox, a refused Dovecot field), or null. */
  readonly blocked: string | null;
  /** Findings that do not block every login but deserve a log line (e.g. an undecodable apop_secret). */
  readonly warnings: readonly string[];
  /** Per-user policy and quota from the extra fields, parsed (user-settings.ts); undefined when none. */
  readonly settings: UserSettings | undefined;
  /** Setting fields whose value could not be used (each also in `warnings`); the default applies. */
  readonly settingProblems: readonly UserSettingProblem[];
}

export interface PasswdIssue {
  readonly lineNo: number;
  /** The user the line names; absent when the line could not be read at all (not UTF-8). */
  readonly user?: string;
  readonly message: string;
}

export interface ParsedPasswd {
  readonly lines: readonly PasswdLine[];
  /** The effective entry of each user: the first line naming them, when that name is valid. */
  readonly users: ReadonlyMap<string, PasswdEntry>;
  /** Everything worth telling the operator: invalid names, duplicates, unusable passwords, bad fields. */
  readonly issues: readonly PasswdIssue[];
}

const REFUSED_FIELDS = new Set(['nologin', 'noauthenticate', 'nopassword', 'allow_nets', 'allow_real_nets']);

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const UNDECODABLE = 'line is not valid UTF-8; line ignored';

/**
 * Parses the file's bytes. Each line must be UTF-8; a line that is not is skipped and reported by its number
 * (issue 13 #15: one stray byte used to stop the server), like any other malformed line. It is not decoded
 * lossily: U+FFFD in place of its bytes would corrupt a line we do not own when the file is rewritten, so its
 * bytes are kept as they are.
 */
export function parsePasswdBytes(bytes: Uint8Array): ParsedPasswd {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const parts: (string | Buffer)[] = [];
  for (let start = 0; start < buf.length; ) {
    const nl = buf.indexOf(0x0a, start);
    const end = nl < 0 ? buf.length : nl;
    const line = buf.subarray(start, end);
    try {
      parts.push(decoder.decode(line));
    } catch {
      parts.push(Buffer.from(line));
    }
    start = end + 1;
  }
  return parseLines(parts);
}

/** Parses text already known to be a string (tests, an empty file). */
export function parsePasswd(text: string): ParsedPasswd {
  const parts = text.split('\n');
  if (parts.length > 0 && parts[parts.length - 1] === '') parts.pop();
  return parseLines(parts);
}

function parseLines(parts: readonly (string | Buffer)[]): ParsedPasswd {
  const lines: PasswdLine[] = [];
  const users = new Map<string, PasswdEntry>();
  const firstLine = new Map<string, number>();
  const issues: PasswdIssue[] = [];
  parts.forEach((part, i) => {
    const lineNo = i + 1;
    if (typeof part !== 'string') {
      lines.push({ raw: '', bytes: part, lineNo, entry: null });
      issues.push({ lineNo, message: UNDECODABLE });
      return;
    }
    const raw = part;
    const entry = parseUserLine(raw);
    lines.push({ raw, lineNo, entry });
    if (!entry) return;
    const report = (message: string): void => {
      issues.push({ lineNo, user: entry.name, message });
    };
    const nameProblem = userNameProblem(entry.name);
    if (nameProblem) {
      report(`${nameProblem}; line ignored`);
      return;
    }
    const first = firstLine.get(entry.name);
    if (first !== undefined) {
      report(`user also defined on line ${first}; this line is ignored`);
      return;
    }
    firstLine.set(entry.name, lineNo);
    users.set(entry.name, entry);
    if (entry.blocked) report(`cannot log in: ${entry.blocked}`);
    else if (entry.password.problem) report(`cannot log in with a password: ${entry.password.problem}`);
    for (const w of entry.warnings) report(w);
  });
  return { lines, users, issues };
}

/** Parses one line; null when it is not a user line. */
export function parseUserLine(raw: string): PasswdEntry | null {
  const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
  if (line.trim() === '' || line.startsWith('#') || line.startsWith(':')) return null;
  const split = line.split(':');
  const fields = split.length > 8 ? [...split.slice(0, 7), split.slice(7).join(':')] : split;
  const name = fields[0];
  const password = parseStoredPassword(fields[1] ?? '');
  const extra = (fields[7] ?? '').split(/[ \t]+/).filter((t) => t !== '');
  const warnings: string[] = [];
  let blocked: string | null = null;

  let mailboxId: string | null = name;
  const mailbox = extraValue(extra, 'mailbox');
  if (mailbox !== undefined) {
    const problem = mailboxIdProblem(mailbox);
    if (problem) {
      mailboxId = null;
      blocked = `invalid mailbox= field: ${problem}`;
    } else {
      mailboxId = mailbox;
    }
  }

  for (const token of extra) {
    const key = fieldKey(token);
    if (REFUSED_FIELDS.has(key)) {
      blocked ??= `Dovecot field '${key}' is not supported by Postern`;
    }
  }

  let sharedSecret = plaintextOf(password);
  const encoded = extraValue(extra, 'apop_secret');
  if (encoded !== undefined) {
    const decoded = decodeSecret(encoded);
    if (decoded === null) {
      warnings.push('apop_secret= is not base64 of a UTF-8 string; APOP and CRAM-MD5 are disabled for this user');
    }
    sharedSecret = decoded;
  }
  if (blocked) sharedSecret = null;

  const { settings, problems: settingProblems } = parseUserSettings(extraFieldPairs(extra));
  for (const p of settingProblems) warnings.push(p.message);

  return { name, fields, password, extra, mailboxId, sharedSecret, blocked, warnings, settings, settingProblems };
}

function fieldKey(token: string): string {
  const eq = token.indexOf('=');
  return eq < 0 ? token : token.slice(0, eq);
}

/** The value of the first `key=value` token, or undefined. */
function extraValue(extra: readonly string[], key: string): string | undefined {
  const token = extra.find((t) => fieldKey(t) === key);
  return token === undefined ? undefined : token.slice(key.length + 1);
}

export function encodeSecret(secret: string): string {
  return Buffer.from(secret, 'utf8').toString('base64');
}

function decodeSecret(encoded: string): string | null {
  if (encoded === '' || !BASE64.test(encoded)) return null;
  try {
    const s = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(encoded, 'base64'));
    return s === '' ? null : s;
  } catch {
    return null;
  }
}

/**
 * A line as Postern writes it: `name:{ARGON2ID}…::::::` plus extra fields when there are any. The six empty
 * fields keep the line in the full eight-field form that Dovecot's userdb also reads.
 */
export function formatUserLine(name: string, passwordField: string, extra: readonly string[] = []): string {
  return `${name}:${passwordField}::::::${extra.join(' ')}`;
}

/**
 * The same user line with a new password field and new extra fields; every other field is kept as it was.
 * Short lines are padded to eight fields only when there are extra fields to write.
 */
export function replaceInLine(entry: PasswdEntry, passwordField: string, extra: readonly string[]): string {
  const fields = [...entry.fields];
  if (fields.length < 2) fields.push('');
  fields[1] = passwordField;
  if (extra.length > 0) {
    while (fields.length < 8) fields.push('');
    fields[7] = extra.join(' ');
  } else if (fields.length >= 8) {
    fields[7] = '';
  }
  return fields.join(':');
}
