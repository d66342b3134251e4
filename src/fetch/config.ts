/**
 * `postern fetch` accounts: from a TOML file (several `[[account]]` tables, `[defaults]` shared by all), or one
 * account from a URL on the command line (`pop3s://user@host:995`). A password is never required in the file:
 * `password_command` (its first output line), `password_env`, or a prompt on the terminal.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { AUTH_MECHANISMS, type AuthMechanism } from '../client/auth.ts';
import type { TlsMode } from '../client/client.ts';
import { lineOf, parseTomlDocument, where } from '../toml/engine.ts';
import {
  allHandled,
  bool,
  checkSection,
  custom,
  describe,
  int,
  isTable,
  placeOf,
  type Section,
  str,
} from '../toml/schema.ts';
import type { DeliveryTarget } from './deliver.ts';

/** A mistake in the accounts file (exit 78, EX_CONFIG). */
export class FetchConfigError extends Error {
  override readonly name: string = 'FetchConfigError';
}

/** A mistake on the command line: a flag, its value, a URL (exit 64, EX_USAGE). */
export class FetchUsageError extends FetchConfigError {
  override readonly name = 'FetchUsageError';
}

export interface FetchAccount {
  name: string;
  host: string;
  port: number;
  tls: TlsMode;
  user: string;
  /** Where the password comes from; `prompt` asks on the terminal. */
  password: { command: string } | { env: string } | { value: string } | 'prompt';
  /** 'auto' = strongest offered; otherwise a mechanism or a list. */
  auth: 'auto' | AuthMechanism[];
  allowInsecureAuth: boolean;
  caFile?: string;
  pinSha256?: string[];
  deliver: DeliveryTarget;
  /** true: leave messages on the server; false: delete each once it is delivered and recorded. */
  keep: boolean;
  /** With keep: delete messages delivered more than this many days ago. */
  keepDays?: number;
  /** Skip (do not fetch, do not delete) messages larger than this many octets. */
  maxSize?: number;
  timeoutMs: number;
  /** Add a Received: header to each message (who it was fetched from, when, with what). */
  receivedHeader: boolean;
  /** The UIDL state file. */
  stateFile: string;
  /** Where an older version kept this account's state (keyed by user and host only); migrated on first use. */
  legacyStateFile?: string;
}

/** Default places, XDG style. */
export function defaultAccountsFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'postern', 'fetch.toml');
}
export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'postern', 'fetch');
}

export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

/** "25M", "1.5G", "100k", 1000 → octets. */
export function parseSize(v: unknown, where: string): number {
  if (typeof v === 'number' && Number.isSafeInteger(v) && v > 0) return v;
  if (typeof v === 'string') {
    const m = /^(\d+(?:\.\d+)?)\s*([kKmMgG]?)i?[bB]?$/.exec(v.trim());
    if (m) {
      const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
      const n = Math.floor(Number(m[1]) * mult);
      if (n > 0) return n;
    }
  }
  throw new FetchConfigError(
    `${where}: a size must be a positive number of octets or like "25M", got ${JSON.stringify(v)}`,
  );
}

const fileKey = (s: string) => s.toLowerCase().replace(/[^a-z0-9._@+=-]/g, '_');

/**
 * The state file of an account: keyed by user, host, port and the account's name, so two accounts on one
 * mailbox (say, one keeping and one deleting, or two machines' names) never share what they have seen.
 * `name` may be omitted when it is the default (user@host).
 */
export function stateFileFor(stateDir: string, a: { user: string; host: string; port: number; name?: string }): string {
  const base = `${a.user}@${a.host}`;
  const named = a.name === undefined || a.name === base ? '' : `${a.name}=`;
  return join(stateDir, `${fileKey(`${named}${base}`)}_${a.port}.json`);
}

/** The state file of versions before accounts were keyed by port and name. */
export function legacyStateFileFor(stateDir: string, user: string, host: string): string {
  return join(stateDir, `${`${user}@${host}`.toLowerCase().replace(/[^a-z0-9._@+-]/g, '_')}.json`);
}

/** Checks SHA-256 pins now (a typo must not wait for the first connection): `where` names the key or flag. */
export function checkPins(pins: readonly string[], where: string, usage: boolean): string[] {
  return pins.map((p) => {
    if (!/^(?:sha256[:/])?(?:[0-9a-f]{2}(?::|\s)?){31}[0-9a-f]{2}$/i.test(p.trim())) {
      const E = usage ? FetchUsageError : FetchConfigError;
      throw new E(`${where}: not a SHA-256 fingerprint (64 hex digits, colons optional): ${JSON.stringify(p)}`);
    }
    return p.trim();
  });
}

/** The keys of an `[[account]]` table, checked with the TOML engine's typed schema (src/toml/schema.ts). */
const accountFields = {
  name: str('Name of the account in messages and state files (default: user@host).', { nonEmpty: true }),
  host: str('Host name of the POP3 server.', { nonEmpty: true, required: true }),
  port: int('Port (default: 995 with implicit TLS, 110 otherwise).', { min: 1, max: 65535 }),
  tls: str('"implicit", "starttls" or "none" (cleartext).', { enum: ['implicit', 'starttls', 'none'] }),
  user: str('User name on the server.', { nonEmpty: true, required: true }),
  password_command: str('Command whose first output line is the password.', { nonEmpty: true }),
  password_env: str('Environment variable that holds the password.', { nonEmpty: true }),
  auth: custom('"auto" or SASL mechanisms, strongest first.', parseAuth),
  allow_insecure_auth: bool('Allow a plaintext password on an unencrypted connection.', false),
  ca_file: str('Trust this CA (PEM) too.', { nonEmpty: true }),
  pin_sha256: custom('Accept exactly these certificates (SHA-256 fingerprints).', pinsOf),
  maildir: str('Deliver into this Maildir.', { nonEmpty: true }),
  mbox: str('Deliver into this mbox file.', { nonEmpty: true }),
  mda: str('Deliver through this command (the message on stdin).', { nonEmpty: true }),
  keep: bool('Leave messages on the server.', true),
  keep_days: custom('With keep: delete messages delivered more than this many days ago.', (v, at) =>
    numberOf(v, at, 'a number of days', (n) => n >= 0),
  ),
  max_size: custom('Skip larger messages: octets, or like "25M".', parseSize),
  timeout: custom('Seconds a connection may stay silent (default 60).', (v, at) =>
    numberOf(v, at, 'seconds', (n) => n > 0),
  ),
  received_header: bool('Add a Received: header to each message.', false),
  state_file: str('The UIDL state file (default: one per account under state_dir).', { nonEmpty: true }),
} as const;
type AccountFields = typeof accountFields;
type AccountSection = Section<AccountFields>;

/** Keys that make sense for every account, settable in [defaults]. */
const defaultFields = {
  tls: accountFields.tls,
  auth: accountFields.auth,
  allow_insecure_auth: accountFields.allow_insecure_auth,
  ca_file: accountFields.ca_file,
  maildir: accountFields.maildir,
  mbox: accountFields.mbox,
  mda: accountFields.mda,
  keep: accountFields.keep,
  keep_days: accountFields.keep_days,
  max_size: accountFields.max_size,
  timeout: accountFields.timeout,
  received_header: accountFields.received_header,
} as const satisfies Partial<AccountFields>;
const DELIVERY_KEYS = ['maildir', 'mbox', 'mda'] as const;

/** A number, or a string holding one (as earlier versions took it). */
function numberOf(v: unknown, at: string, want: string, ok: (n: number) => boolean): number {
  const n = typeof v === 'number' ? v : typeof v === 'string' && v.trim() !== '' ? Number(v) : Number.NaN;
  if (!(Number.isFinite(n) && ok(n))) throw new FetchConfigError(`${at} must be ${want}, got ${describe(v)}`);
  return n;
}

function pinsOf(v: unknown, at: string): string[] {
  const pins = Array.isArray(v) ? v : [v];
  if (!pins.every((p) => typeof p === 'string')) throw new FetchConfigError(`${at} must be a string or strings`);
  return checkPins(pins, at, false);
}

export function parseAccountsFile(file: string, opts: { stateDir?: string } = {}): FetchAccount[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new FetchConfigError(`cannot read accounts file ${file}: ${(err as Error).message}`);
  }
  return parseAccounts(text, file, opts);
}

export function parseAccounts(text: string, file: string, opts: { stateDir?: string } = {}): FetchAccount[] {
  const error = (m: string) => new FetchConfigError(m);
  const doc = parseTomlDocument(text, file, error);
  // Every error names the line: of the key, or of the table it is in.
  const at = (key: string) => where(file, lineOf(text, null, key) ?? lineOf(text, key, null));
  for (const key of Object.keys(doc)) {
    if (key !== 'account' && key !== 'defaults' && key !== 'state_dir') {
      throw new FetchConfigError(`${at(key)}: unknown key "${key}" (known: state_dir, [defaults], [[account]])`);
    }
  }
  const rawDefaults = doc.defaults ?? {};
  if (!isTable(rawDefaults)) throw new FetchConfigError(`${at('defaults')}: "defaults" must be a table ([defaults])`);
  checkSection(defaultFields, rawDefaults, {
    source: text,
    file,
    table: 'defaults',
    error,
    keyLabel: (k) => `[defaults]: "${k}"`,
  });
  const list = doc.account ?? [];
  if (!Array.isArray(list)) {
    throw new FetchConfigError(`${at('account')}: "account" must be an array of tables ([[account]])`);
  }
  if (list.length === 0) throw new FetchConfigError(`${file}: no [[account]] table`);
  const stateDir = opts.stateDir ?? (typeof doc.state_dir === 'string' ? expandHome(doc.state_dir) : defaultStateDir());
  const names = new Set<string>();
  return list.map((raw: unknown, index: number) => {
    const place = { source: text, file, table: 'account', index, error };
    const label = `[[account]] #${index + 1}`;
    if (!isTable(raw)) throw new FetchConfigError(`${placeOf(place, null)}: ${label} must be a table`);
    // [defaults] was checked above (its errors name its own lines); what is left to go wrong is the account's.
    const merged: Record<string, unknown> = { ...rawDefaults, ...raw };
    // An account that names its own delivery replaces the default one instead of conflicting with it.
    if (DELIVERY_KEYS.some((k) => k in raw)) for (const k of DELIVERY_KEYS) if (!(k in raw)) delete merged[k];
    const checked = checkSection(accountFields, merged, { ...place, keyLabel: (k) => `${label}: "${k}"` });
    const a = buildAccount(checked, `${placeOf(place, null)}: ${label}`, stateDir);
    if (names.has(a.name)) {
      throw new FetchConfigError(`${placeOf(place, 'name')}: two accounts are named "${a.name}"`);
    }
    names.add(a.name);
    return a;
  });
}

function buildAccount(t: AccountSection, where: string, stateDir: string): FetchAccount {
  const { name, host, port, tls = 'implicit', user, password_command, password_env, auth, ...more } = t;
  const { allow_insecure_auth, ca_file, pin_sha256, maildir, mbox, mda, keep, keep_days, ...more2 } = more;
  const { max_size, timeout = 60, received_header, state_file, ...rest } = more2;
  allHandled(rest);
  if (password_command && password_env) {
    throw new FetchConfigError(`${where}: use one of "password_command" and "password_env"`);
  }
  const password: FetchAccount['password'] = password_command
    ? { command: password_command }
    : password_env
      ? { env: password_env }
      : 'prompt';
  const accountName = name ?? `${user}@${host}`;
  const realPort = port ?? (tls === 'implicit' ? 995 : 110);
  return {
    name: accountName,
    host,
    port: realPort,
    tls,
    user,
    password,
    auth: auth ?? 'auto',
    allowInsecureAuth: allow_insecure_auth,
    caFile: ca_file ? expandHome(ca_file) : undefined,
    pinSha256: pin_sha256,
    deliver: deliveryOf({ maildir, mbox, mda }, where),
    keep,
    keepDays: keep_days,
    maxSize: max_size,
    timeoutMs: timeout * 1000,
    receivedHeader: received_header,
    stateFile: state_file
      ? resolve(expandHome(state_file))
      : stateFileFor(stateDir, { user, host, port: realPort, name: accountName }),
    legacyStateFile: state_file ? undefined : legacyStateFileFor(stateDir, user, host),
  };
}

export function parseAuth(v: unknown, where: string): FetchAccount['auth'] {
  if (v === 'auto') return 'auto';
  const list = typeof v === 'string' ? v.split(/[\s,]+/) : v;
  if (!Array.isArray(list) || list.length === 0)
    throw new FetchConfigError(`${where}: "auth" must be "auto" or mechanisms`);
  return list.map((m) => {
    const up = String(m).toUpperCase();
    if (!(AUTH_MECHANISMS as readonly string[]).includes(up)) {
      throw new FetchConfigError(
        `${where}: unknown auth mechanism "${m}" (known: auto, ${AUTH_MECHANISMS.join(', ')})`,
      );
    }
    return up as AuthMechanism;
  });
}

function deliveryOf(
  targets: { maildir: string | undefined; mbox: string | undefined; mda: string | undefined },
  where: string,
): DeliveryTarget {
  const set = DELIVERY_KEYS.filter((k) => targets[k] !== undefined);
  if (set.length !== 1) {
    throw new FetchConfigError(
      `${where}: exactly one of "maildir", "mbox" and "mda" is needed${set.length ? ` (got ${set.join(', ')})` : ''}`,
    );
  }
  const k = set[0];
  const v = targets[k] ?? '';
  if (k === 'mda') return { kind: 'mda', command: v };
  return { kind: k, path: resolve(expandHome(v)) };
}

/**
 * One account from a URL: pop3s://user@host[:port] (implicit TLS), pop3://user@host[:port] (STLS, or
 * ?tls=none for cleartext). The user may be percent-encoded (user%40example.org for an address).
 */
export function accountFromUrl(
  url: string,
  where = 'URL',
): Pick<FetchAccount, 'name' | 'host' | 'port' | 'tls' | 'user'> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FetchConfigError(`${where}: not a URL: ${url}`);
  }
  if (u.protocol !== 'pop3:' && u.protocol !== 'pop3s:') {
    throw new FetchConfigError(`${where}: use pop3s://user@host (implicit TLS) or pop3://user@host (STLS)`);
  }
  if (u.password)
    throw new FetchConfigError(
      `${where}: do not put the password in the URL (use --password-env or --password-command)`,
    );
  const user = decodeURIComponent(u.username);
  if (!user) throw new FetchConfigError(`${where}: the URL needs a user: pop3s://USER@${u.hostname}`);
  let tls: TlsMode = u.protocol === 'pop3s:' ? 'implicit' : 'starttls';
  const q = u.searchParams.get('tls');
  if (q) {
    if (q !== 'none' && q !== 'starttls' && q !== 'implicit')
      throw new FetchConfigError(`${where}: tls= must be none, starttls or implicit`);
    tls = q;
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const port = u.port ? Number(u.port) : tls === 'implicit' ? 995 : 110;
  return { name: `${user}@${host}`, host, port, tls, user };
}
