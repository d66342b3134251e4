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

const ACCOUNT_KEYS = [
  'name',
  'host',
  'port',
  'tls',
  'user',
  'password_command',
  'password_env',
  'auth',
  'allow_insecure_auth',
  'ca_file',
  'pin_sha256',
  'maildir',
  'mbox',
  'mda',
  'keep',
  'keep_days',
  'max_size',
  'timeout',
  'received_header',
  'state_file',
] as const;
/** Keys that make sense for every account, settable in [defaults]. */
const DEFAULT_KEYS = new Set<string>([
  'tls',
  'auth',
  'allow_insecure_auth',
  'ca_file',
  'maildir',
  'mbox',
  'mda',
  'keep',
  'keep_days',
  'max_size',
  'timeout',
  'received_header',
]);

type Table = Record<string, unknown>;
const DELIVERY_KEYS = ['maildir', 'mbox', 'mda'];

function isTable(v: unknown): v is Table {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
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
  const doc = parseTomlDocument(text, file, (m) => new FetchConfigError(m));
  // Every error names the line: of the key, or of the table it is in.
  const at = (table: string | null, key: string | null, index?: number) =>
    where(file, lineOf(text, table, key, index) ?? (table === null ? undefined : lineOf(text, table, null, index)));
  for (const key of Object.keys(doc)) {
    if (key !== 'account' && key !== 'defaults' && key !== 'state_dir') {
      const line = lineOf(text, null, key) ?? lineOf(text, key, null);
      throw new FetchConfigError(
        `${where(file, line)}: unknown key "${key}" (known: state_dir, [defaults], [[account]])`,
      );
    }
  }
  const defaults = doc.defaults ?? {};
  if (!isTable(defaults))
    throw new FetchConfigError(`${at(null, 'defaults')}: "defaults" must be a table ([defaults])`);
  for (const k of Object.keys(defaults)) {
    if (!DEFAULT_KEYS.has(k)) {
      throw new FetchConfigError(
        `${at('defaults', k)}: [defaults]: unknown key "${k}" (known: ${[...DEFAULT_KEYS].join(', ')})`,
      );
    }
  }
  const list = doc.account ?? [];
  if (!Array.isArray(list)) {
    throw new FetchConfigError(`${at(null, 'account')}: "account" must be an array of tables ([[account]])`);
  }
  if (list.length === 0) throw new FetchConfigError(`${file}: no [[account]] table`);
  const stateDir = opts.stateDir ?? (typeof doc.state_dir === 'string' ? expandHome(doc.state_dir) : defaultStateDir());
  const names = new Set<string>();
  return list.map((raw, i) => {
    if (!isTable(raw)) throw new FetchConfigError(`${at('account', null, i)}: [[account]] #${i + 1} must be a table`);
    for (const k of Object.keys(raw)) {
      if (!(ACCOUNT_KEYS as readonly string[]).includes(k)) {
        throw new FetchConfigError(
          `${at('account', k, i)}: [[account]] #${i + 1}: unknown key "${k}" (known: ${ACCOUNT_KEYS.join(', ')})`,
        );
      }
    }
    const merged: Table = { ...defaults, ...raw };
    // An account that names its own delivery replaces the default one instead of conflicting with it.
    if (DELIVERY_KEYS.some((k) => k in raw)) for (const k of DELIVERY_KEYS) if (!(k in raw)) delete merged[k];
    const a = buildAccount(merged, `${at('account', null, i)}: [[account]] #${i + 1}`, stateDir);
    if (names.has(a.name)) {
      throw new FetchConfigError(`${at('account', 'name', i)}: two accounts are named "${a.name}"`);
    }
    names.add(a.name);
    return a;
  });
}

function buildAccount(t: Table, where: string, stateDir: string): FetchAccount {
  const str = (k: string, required = false): string | undefined => {
    const v = t[k];
    if (v === undefined) {
      if (required) throw new FetchConfigError(`${where}: "${k}" is required`);
      return undefined;
    }
    if (typeof v !== 'string' || v === '') throw new FetchConfigError(`${where}: "${k}" must be a non-empty string`);
    return v;
  };
  const bool = (k: string, dflt: boolean): boolean => {
    const v = t[k];
    if (v === undefined) return dflt;
    if (typeof v !== 'boolean') throw new FetchConfigError(`${where}: "${k}" must be true or false`);
    return v;
  };
  const host = str('host', true)!;
  const user = str('user', true)!;
  const tls = (str('tls') ?? 'implicit') as TlsMode;
  if (!['implicit', 'starttls', 'none'].includes(tls)) {
    throw new FetchConfigError(`${where}: "tls" must be "implicit", "starttls" or "none"`);
  }
  let port = tls === 'implicit' ? 995 : 110;
  if (t.port !== undefined) {
    if (typeof t.port !== 'number' || !Number.isInteger(t.port) || t.port < 1 || t.port > 65535) {
      throw new FetchConfigError(`${where}: "port" must be a port number`);
    }
    port = t.port;
  }
  const pwCommand = str('password_command');
  const pwEnv = str('password_env');
  if (pwCommand && pwEnv) throw new FetchConfigError(`${where}: use one of "password_command" and "password_env"`);
  const password: FetchAccount['password'] = pwCommand ? { command: pwCommand } : pwEnv ? { env: pwEnv } : 'prompt';
  const deliver = parseDelivery(t, where);
  let auth: FetchAccount['auth'] = 'auto';
  if (t.auth !== undefined) auth = parseAuth(t.auth, where);
  const keepDays = t.keep_days === undefined ? undefined : Number(t.keep_days);
  if (keepDays !== undefined && !(Number.isFinite(keepDays) && keepDays >= 0)) {
    throw new FetchConfigError(`${where}: "keep_days" must be a number of days`);
  }
  const timeout = t.timeout === undefined ? 60 : Number(t.timeout);
  if (!(Number.isFinite(timeout) && timeout > 0)) throw new FetchConfigError(`${where}: "timeout" must be seconds`);
  const pin = t.pin_sha256;
  let pinSha256: string[] | undefined;
  if (pin !== undefined) {
    const pins = Array.isArray(pin) ? pin : [pin];
    if (!pins.every((p) => typeof p === 'string'))
      throw new FetchConfigError(`${where}: "pin_sha256" must be a string or strings`);
    pinSha256 = checkPins(pins as string[], `${where}: "pin_sha256"`, false);
  }
  const stateFile = str('state_file');
  return {
    name: str('name') ?? `${user}@${host}`,
    host,
    port,
    tls,
    user,
    password,
    auth,
    allowInsecureAuth: bool('allow_insecure_auth', false),
    caFile: str('ca_file') ? expandHome(str('ca_file')!) : undefined,
    pinSha256,
    deliver,
    keep: bool('keep', true),
    keepDays,
    maxSize: t.max_size === undefined ? undefined : parseSize(t.max_size, `${where}: "max_size"`),
    timeoutMs: timeout * 1000,
    receivedHeader: bool('received_header', false),
    stateFile: stateFile
      ? resolve(expandHome(stateFile))
      : stateFileFor(stateDir, { user, host, port, name: str('name') ?? `${user}@${host}` }),
    legacyStateFile: stateFile ? undefined : legacyStateFileFor(stateDir, user, host),
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

function parseDelivery(t: Table, where: string): DeliveryTarget {
  const set = (['maildir', 'mbox', 'mda'] as const).filter((k) => t[k] !== undefined);
  if (set.length !== 1) {
    throw new FetchConfigError(
      `${where}: exactly one of "maildir", "mbox" and "mda" is needed${set.length ? ` (got ${set.join(', ')})` : ''}`,
    );
  }
  const k = set[0];
  const v = t[k];
  if (typeof v !== 'string' || v === '') throw new FetchConfigError(`${where}: "${k}" must be a non-empty string`);
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
