import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import type { LmtpConfig } from '../delivery/lmtp.ts';
import type { RecipientLookup } from '../delivery/recipients.ts';
import { parseCidr } from '../server/address.ts';
import type { Limits, ListenerConfig, ListenerTls, Policy } from '../server/options.ts';
import { parseExpireDays } from '../server/policy.ts';
import { lineOf, parseTomlDocument } from '../toml/engine.ts';
import { type Field, SERVER_SASL_MECHANISMS, schema } from './schema.ts';

export { parseCidr } from '../server/address.ts';
export type { ListenerConfig, ListenerTls } from '../server/options.ts';

export interface Config {
  readonly server: {
    readonly hostname?: string;
    readonly greeting: string;
    readonly implementation: boolean;
    readonly allowPlaintextAuth: boolean;
    readonly loopbackIsSecure: boolean;
    readonly workers: number;
  };
  readonly listen: readonly ListenerConfig[];
  readonly tls?: {
    readonly cert: string;
    readonly key: string;
    readonly minVersion: 'TLSv1.2' | 'TLSv1.3';
    readonly clientCa?: string;
    readonly clientCertUser: 'CN' | 'emailAddress';
  };
  readonly storage: {
    readonly driver: 'maildir' | 'postgres';
    readonly root: string;
    readonly layout: string;
    readonly syncSmallReads: boolean;
    /** Connection and lock settings of the PostgreSQL store (also used by [auth] driver = "postgres"). */
    readonly postgres: PostgresConfig;
  };
  readonly auth: {
    readonly driver: 'passwd-file' | 'postgres';
    /** The user database's PostgreSQL connection when driver = "postgres" (url defaults to storage.url). */
    readonly postgres: PostgresConfig;
    readonly usersFile: string;
    readonly mechanisms: readonly string[];
    readonly apop: boolean;
    /** Credential cache: most entries, and how long an entry is trusted (ms). */
    readonly cacheSize: number;
    readonly cacheTtlMs: number;
    /** PBKDF2 iterations of SCRAM keys written, and announced for unknown users (issue 13 #3). */
    readonly scramIterations: number;
  };
  readonly oauth?:
    | {
        readonly kind: 'jwks';
        readonly jwksFile?: string;
        readonly jwksUrl?: string;
        readonly issuer: string;
        readonly audience: string;
        readonly userClaim: string;
        readonly stripDomain: boolean;
      }
    | { readonly kind: 'command'; readonly command: readonly string[] };
  readonly limits: Limits;
  readonly policy: Policy;
  readonly certificates: readonly { readonly names: readonly string[]; readonly cert: string; readonly key: string }[];
  readonly proxy: { readonly trusted: readonly string[]; readonly timeoutMs: number };
  readonly log: { readonly level: string };
  /** The LMTP listener; undefined when neither a port nor a socket is configured. */
  readonly lmtp?: LmtpConfig;
  readonly quota: QuotaConfig;
  readonly metrics: MetricsConfig;
}

export interface PostgresConfig {
  /** Unset: the libpq PG* environment variables. */
  readonly url?: string;
  readonly poolSize: number;
  readonly statementTimeoutMs: number;
  readonly leaseMs: number;
}

export type { LmtpConfig } from '../delivery/lmtp.ts';
export type { RecipientLookup } from '../delivery/recipients.ts';

/** Default limits of every mailbox; 0 means no limit. */
export interface QuotaConfig {
  readonly bytes: number;
  readonly messages: number;
  readonly tempfail: boolean;
}

export interface MetricsConfig {
  readonly enabled: boolean;
  readonly address: string;
  readonly port: number;
  readonly processMetrics: boolean;
  /** Concurrent connections to the endpoint; more are closed at once (issue 13 #10). */
  readonly maxConnections: number;
}

export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

type Raw = Record<string, unknown>;

function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (v instanceof Date) return 'a date';
  return typeof v === 'object' ? 'a table' : `${typeof v} ${JSON.stringify(v)}`;
}

function checkField(name: string, f: Field, v: unknown, where: () => string): unknown {
  const bad = (want: string) => new ConfigError(`${where()}: "${name}" must be ${want}, got ${describe(v)}`);
  if (v === undefined) return 'default' in f ? f.default : undefined;
  switch (f.type) {
    case 'string':
      if (typeof v !== 'string') throw bad('a string');
      if (f.enum && !f.enum.includes(v)) throw bad(`one of ${f.enum.map((e) => `"${e}"`).join(', ')}`);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'integer':
    case 'number': {
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number' || Number.isNaN(n)) throw bad(f.type === 'integer' ? 'an integer' : 'a number');
      if (f.type === 'integer' && !Number.isInteger(n)) throw bad('an integer');
      if (f.min !== undefined && n < f.min) throw bad(`at least ${f.min}`);
      if (f.max !== undefined && n > f.max) throw bad(`at most ${f.max}`);
      return n;
    }
    case 'string[]':
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bad('an array of strings');
      return v;
  }
}

function checkTable(
  source: string,
  file: string,
  tableName: string,
  fields: Readonly<Record<string, Field>>,
  raw: Raw,
  index?: number,
): Raw {
  const out: Raw = {};
  const at = (key: string | null) => {
    const line = lineOf(source, tableName, key, index ?? 0);
    return `${file}${line ? `:${line}` : ''}`;
  };
  const label = index === undefined ? `[${tableName}]` : `[[${tableName}]] #${index + 1}`;
  for (const key of Object.keys(raw)) {
    if (!(key in fields)) {
      throw new ConfigError(`${at(key)}: unknown key "${key}" in ${label} (known: ${Object.keys(fields).join(', ')})`);
    }
  }
  for (const [key, f] of Object.entries(fields)) {
    out[key] = checkField(`${tableName}.${key}`, f, raw[key], () => at(key));
  }
  return out;
}

/** Parses and validates TOML text. `file` is used in messages and to resolve relative paths. */
export function parseConfig(source: string, file = 'postern.toml'): Config {
  const doc: Raw = parseTomlDocument(source, file, (m) => new ConfigError(m));
  const base = dirname(resolve(file));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const t: Record<string, Raw | Raw[]> = {};
  for (const key of Object.keys(doc)) {
    if (!(key in schema)) {
      const line = lineOf(source, key, null) ?? lineOf(source, null, key);
      throw new ConfigError(
        `${file}${line ? `:${line}` : ''}: unknown key or table "${key}" (known: ${Object.keys(schema).join(', ')})`,
      );
    }
  }
  for (const [name, spec] of Object.entries(schema)) {
    const raw = doc[name];
    if (spec.kind === 'array') {
      if (raw !== undefined && !Array.isArray(raw)) {
        throw new ConfigError(`${file}: "${name}" must be an array of tables ([[${name}]])`);
      }
      t[name] = ((raw as Raw[] | undefined) ?? []).map((r, i) => checkTable(source, file, name, spec.fields, r, i));
    } else {
      if (raw !== undefined && (typeof raw !== 'object' || Array.isArray(raw) || raw === null)) {
        throw new ConfigError(`${file}: "${name}" must be a table ([${name}])`);
      }
      t[name] = checkTable(source, file, name, spec.fields, (raw as Raw | undefined) ?? {});
    }
  }
  const s = t.server as Raw;
  const listen = (t.listen as Raw[]).map((l, i) => {
    if (l.port === undefined) throw new ConfigError(`${file}: [[listen]] #${i + 1} needs a "port"`);
    return {
      address: l.address as string,
      port: l.port as number,
      tls: l.tls as ListenerTls,
      proxyProtocol: l.proxy_protocol as boolean,
    };
  });
  const tlsRaw = t.tls as Raw;
  let tls: Config['tls'];
  if (tlsRaw.cert !== undefined || tlsRaw.key !== undefined) {
    if (tlsRaw.cert === undefined || tlsRaw.key === undefined) {
      throw new ConfigError(`${file}: [tls] needs both "cert" and "key"`);
    }
    tls = {
      cert: path(tlsRaw.cert as string),
      key: path(tlsRaw.key as string),
      minVersion: tlsRaw.min_version as 'TLSv1.2' | 'TLSv1.3',
      clientCa: tlsRaw.client_ca === undefined ? undefined : path(tlsRaw.client_ca as string),
      clientCertUser: tlsRaw.client_cert_user as 'CN' | 'emailAddress',
    };
  }
  if (!tls && listen.some((l) => l.tls !== 'none')) {
    throw new ConfigError(`${file}: a listener uses TLS ("implicit" or "starttls") but [tls] has no cert and key`);
  }
  const st = t.storage as Raw;
  if (!(st.layout as string).includes('%u')) throw new ConfigError(`${file}: storage.layout must contain %u`);
  const pgOf = (url: string | undefined): PostgresConfig => {
    if (url !== undefined && !/^postgres(ql)?:\/\//.test(url)) {
      throw new ConfigError(`${file}: a PostgreSQL url must start with postgres:// or postgresql://`);
    }
    return {
      url,
      poolSize: st.pool_size as number,
      statementTimeoutMs: Math.round((st.statement_timeout as number) * 1000),
      leaseMs: Math.round((st.lease as number) * 1000),
    };
  };
  const lim = t.limits as Raw;
  const px = t.proxy as Raw;
  for (const cidr of px.trusted as string[]) {
    if (!parseCidr(cidr)) throw new ConfigError(`${file}: proxy.trusted: "${cidr}" is not a CIDR like "10.0.0.0/8"`);
  }
  if (listen.some((l) => l.proxyProtocol) && (px.trusted as string[]).length === 0) {
    throw new ConfigError(`${file}: a listener has proxy_protocol = true but proxy.trusted is empty`);
  }
  const sec = (k: string) => Math.round((lim[k] as number) * 1000);
  const lm = t.lmtp as Raw;
  let lmtp: LmtpConfig | undefined;
  if (lm.port !== undefined && lm.socket !== undefined) {
    throw new ConfigError(`${file}: [lmtp] takes "port" or "socket", not both`);
  }
  if (lm.port !== undefined || lm.socket !== undefined) {
    const mode = lm.socket_mode as string;
    if (!/^0?[0-7]{3}$/.test(mode)) throw new ConfigError(`${file}: lmtp.socket_mode must be octal like "0660"`);
    lmtp = {
      address: lm.address as string,
      port: lm.port as number | undefined,
      socket: lm.socket === undefined ? undefined : path(lm.socket as string),
      socketMode: Number.parseInt(mode, 8),
      hostname: lm.hostname as string | undefined,
      maxMessageSize: lm.max_message_size as number,
      maxRecipients: lm.max_recipients as number,
      maxConnections: lm.max_connections as number,
      idleTimeoutMs: Math.round((lm.idle_timeout as number) * 1000),
      recipientLookup: lm.recipient_lookup as RecipientLookup,
      recipientDelimiter: lm.recipient_delimiter as string,
    };
  }
  const q = t.quota as Raw;
  const me = t.metrics as Raw;
  return {
    server: {
      hostname: s.hostname as string | undefined,
      greeting: s.greeting as string,
      implementation: s.implementation as boolean,
      allowPlaintextAuth: s.allow_plaintext_auth as boolean,
      loopbackIsSecure: s.loopback_is_secure as boolean,
      workers: s.workers as number,
    },
    listen,
    tls,
    storage: {
      driver: st.driver as 'maildir' | 'postgres',
      postgres: pgOf(st.url as string | undefined),
      root: path(st.root as string),
      layout: st.layout as string,
      syncSmallReads: st.sync_small_reads as boolean,
    },
    auth: {
      driver: (t.auth as Raw).driver as 'passwd-file' | 'postgres',
      postgres: pgOf(((t.auth as Raw).url as string | undefined) ?? (st.url as string | undefined)),
      usersFile: path((t.auth as Raw).users_file as string),
      mechanisms: checkMechanisms((t.auth as Raw).mechanisms as string[], file),
      apop: (t.auth as Raw).apop as boolean,
      cacheSize: (t.auth as Raw).cache_size as number,
      cacheTtlMs: Math.round(((t.auth as Raw).cache_ttl as number) * 1000),
      scramIterations: (t.auth as Raw).scram_iterations as number,
    },
    oauth: oauthOf(t.oauth as Raw, file, path),
    limits: {
      maxLineLength: lim.max_line_length as number,
      maxAuthLineLength: lim.max_auth_line_length as number,
      idleTimeoutAuthMs: sec('idle_timeout_auth'),
      idleTimeoutMs: sec('idle_timeout'),
      maxBadCommands: lim.max_bad_commands as number,
      maxConnections: lim.max_connections as number,
      maxConnectionsPerAddress: lim.max_connections_per_address as number,
      maxAuthFailures: lim.max_auth_failures as number,
      failedLoginDelayMs: sec('failed_login_delay'),
      failedLoginMaxDelayMs: sec('failed_login_max_delay'),
      shutdownGraceMs: sec('shutdown_grace'),
      tlsHandshakeTimeoutMs: sec('tls_handshake_timeout'),
    },
    policy: {
      loginDelaySeconds: (t.policy as Raw).login_delay as number,
      expireDays: parseExpire((t.policy as Raw).expire as string, file),
    },
    certificates: (t.certificate as Raw[]).map((c, i) => {
      if (c.cert === undefined || c.key === undefined || (c.names as string[]).length === 0) {
        throw new ConfigError(`${file}: [[certificate]] #${i + 1} needs "names", "cert" and "key"`);
      }
      return { names: c.names as string[], cert: path(c.cert as string), key: path(c.key as string) };
    }),
    proxy: { trusted: px.trusted as string[], timeoutMs: Math.round((px.timeout as number) * 1000) },
    log: { level: (t.log as Raw).level as string },
    lmtp,
    quota: { bytes: q.bytes as number, messages: q.messages as number, tempfail: q.tempfail as boolean },
    metrics: {
      enabled: me.enabled as boolean,
      address: me.address as string,
      port: me.port as number,
      processMetrics: me.process_metrics as boolean,
      maxConnections: me.max_connections as number,
    },
  };
}

export function loadConfig(file: string): Config {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as Error).message}`);
  }
  return parseConfig(text, file);
}

/** `expire`: "never" or a whole number of days. */
export function parseExpire(v: string, where = 'expire'): number | 'never' {
  const days = parseExpireDays(v);
  if (days !== undefined) return days;
  throw new ConfigError(`${where}: policy.expire must be "never" or a number of days, got "${v}"`);
}

function checkMechanisms(list: string[], file: string): string[] {
  const out = list.map((m) => m.toUpperCase());
  for (const m of out) {
    if (!SERVER_SASL_MECHANISMS.includes(m)) {
      throw new ConfigError(`${file}: auth.mechanisms: unknown "${m}" (known: ${SERVER_SASL_MECHANISMS.join(', ')})`);
    }
  }
  return out;
}

function oauthOf(o: Raw, file: string, path: (p: string) => string): Config['oauth'] {
  const command = o.command as string[];
  const jwks = o.jwks_file !== undefined || o.jwks_url !== undefined;
  if (command.length > 0) {
    if (jwks) throw new ConfigError(`${file}: [oauth] takes a JWKS or a command, not both`);
    return { kind: 'command', command };
  }
  if (!jwks) return undefined;
  if (o.jwks_file !== undefined && o.jwks_url !== undefined) {
    throw new ConfigError(`${file}: [oauth] takes jwks_file or jwks_url, not both`);
  }
  if (o.issuer === undefined || o.audience === undefined) {
    throw new ConfigError(`${file}: [oauth] needs "issuer" and "audience" with a JWKS`);
  }
  return {
    kind: 'jwks',
    jwksFile: o.jwks_file === undefined ? undefined : path(o.jwks_file as string),
    jwksUrl: o.jwks_url as string | undefined,
    issuer: o.issuer as string,
    audience: o.audience as string,
    userClaim: o.user_claim as string,
    stripDomain: o.strip_domain as boolean,
  };
}
