import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parseExpireDays } from '../auth/user-settings.ts';
import type { LmtpConfig } from '../delivery/lmtp.ts';
import { parseCidr } from '../server/address.ts';
import type { Limits, ListenerConfig, Policy } from '../server/options.ts';
import { parseTomlDocument } from '../toml/engine.ts';
import { allHandled, checkDocument } from '../toml/schema.ts';
import { type ConfigFile, SERVER_SASL_MECHANISMS, schema } from './schema.ts';

export { parseCidr } from '../server/address.ts';
export type { ListenerConfig, ListenerTls } from '../server/options.ts';

/**
 * The configuration as the layers take it (their own option types, durations in ms, paths resolved), mapped
 * from `ConfigFile`, the file as checked against the schema (src/config/schema.ts).
 */
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
    readonly minVersion: ConfigFile['tls']['min_version'];
    readonly clientCa?: string;
    readonly clientCertUser: ConfigFile['tls']['client_cert_user'];
  };
  readonly storage: {
    readonly driver: ConfigFile['storage']['driver'];
    readonly root: string;
    readonly layout: string;
    readonly syncSmallReads: boolean;
    /** Connection and lock settings of the PostgreSQL store (also used by [auth] driver = "postgres"). */
    readonly postgres: PostgresConfig;
  };
  readonly auth: {
    readonly driver: ConfigFile['auth']['driver'];
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
  readonly log: { readonly level: ConfigFile['log']['level'] };
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
export type { ConfigFile } from './schema.ts';

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

/**
 * Parses and validates TOML text. `file` is used in messages and to resolve relative paths. Each section of
 * the checked file is taken apart key by key and the rest handed to `allHandled`: a key added to the schema
 * and not mapped here does not compile.
 */
export function parseConfig(source: string, file = 'postern.toml'): Config {
  const doc = parseTomlDocument(source, file, (m) => new ConfigError(m));
  const c: ConfigFile = checkDocument(schema, doc, source, file, (m) => new ConfigError(m));
  const base = dirname(resolve(file));
  const path = (p: string) => (isAbsolute(p) ? p : resolve(base, p));
  const optionalPath = (p: string | undefined) => (p === undefined ? undefined : path(p));
  const ms = (seconds: number) => Math.round(seconds * 1000);
  const fail = (message: string) => new ConfigError(`${file}: ${message}`);

  const listen = c.listen.map(({ address, port, tls, proxy_protocol, ...rest }): ListenerConfig => {
    allHandled(rest);
    return { address, port, tls, proxyProtocol: proxy_protocol };
  });
  const tls = tlsOf(c.tls, path, fail);
  if (!tls && listen.some((l) => l.tls !== 'none')) {
    throw fail('a listener uses TLS ("implicit" or "starttls") but [tls] has no cert and key');
  }
  const { trusted, timeout, ...proxyRest } = c.proxy;
  allHandled(proxyRest);
  for (const cidr of trusted) {
    if (!parseCidr(cidr)) throw fail(`proxy.trusted: "${cidr}" is not a CIDR like "10.0.0.0/8"`);
  }
  if (listen.some((l) => l.proxyProtocol) && trusted.length === 0) {
    throw fail('a listener has proxy_protocol = true but proxy.trusted is empty');
  }
  const { driver, root, url, pool_size, statement_timeout, lease, layout, sync_small_reads, ...storageRest } =
    c.storage;
  allHandled(storageRest);
  if (!layout.includes('%u')) throw fail('storage.layout must contain %u');
  const pgOf = (pgUrl: string | undefined): PostgresConfig => {
    if (pgUrl !== undefined && !/^postgres(ql)?:\/\//.test(pgUrl)) {
      throw fail('a PostgreSQL url must start with postgres:// or postgresql://');
    }
    return { url: pgUrl, poolSize: pool_size, statementTimeoutMs: ms(statement_timeout), leaseMs: ms(lease) };
  };
  const { level, ...logRest } = c.log;
  allHandled(logRest);
  const { bytes, messages, tempfail, ...quotaRest } = c.quota;
  allHandled(quotaRest);
  const { login_delay, expire, ...policyRest } = c.policy;
  allHandled(policyRest);
  return {
    server: serverOf(c.server),
    listen,
    tls,
    storage: { driver, postgres: pgOf(url), root: path(root), layout, syncSmallReads: sync_small_reads },
    auth: authOf(c.auth, url, pgOf, path, fail),
    oauth: oauthOf(c.oauth, path, fail),
    limits: limitsOf(c.limits, ms),
    policy: { loginDelaySeconds: login_delay, expireDays: parseExpire(expire, file) },
    certificates: c.certificate.map(({ names, cert, key, ...rest }, i) => {
      allHandled(rest);
      if (cert === undefined || key === undefined || names.length === 0) {
        throw fail(`[[certificate]] #${i + 1} needs "names", "cert" and "key"`);
      }
      return { names, cert: path(cert), key: path(key) };
    }),
    proxy: { trusted, timeoutMs: ms(timeout) },
    log: { level },
    lmtp: lmtpOf(c.lmtp, optionalPath, ms, fail),
    quota: { bytes, messages, tempfail },
    metrics: metricsOf(c.metrics),
  };
}

type Fail = (message: string) => ConfigError;

function serverOf(s: ConfigFile['server']): Config['server'] {
  const { hostname, greeting, implementation, allow_plaintext_auth, loopback_is_secure, workers, ...rest } = s;
  allHandled(rest);
  return {
    hostname,
    greeting,
    implementation,
    allowPlaintextAuth: allow_plaintext_auth,
    loopbackIsSecure: loopback_is_secure,
    workers,
  };
}

function tlsOf(t: ConfigFile['tls'], path: (p: string) => string, fail: Fail): Config['tls'] {
  const { cert, key, client_ca, client_cert_user, min_version, ...rest } = t;
  allHandled(rest);
  if (cert === undefined && key === undefined) return undefined;
  if (cert === undefined || key === undefined) throw fail('[tls] needs both "cert" and "key"');
  return {
    cert: path(cert),
    key: path(key),
    minVersion: min_version,
    clientCa: client_ca === undefined ? undefined : path(client_ca),
    clientCertUser: client_cert_user,
  };
}

function authOf(
  a: ConfigFile['auth'],
  storageUrl: string | undefined,
  pgOf: (url: string | undefined) => PostgresConfig,
  path: (p: string) => string,
  fail: Fail,
): Config['auth'] {
  const { driver, users_file, url, mechanisms, apop, cache_size, cache_ttl, scram_iterations, ...rest } = a;
  allHandled(rest);
  return {
    driver,
    postgres: pgOf(url ?? storageUrl),
    usersFile: path(users_file),
    mechanisms: checkMechanisms(mechanisms, fail),
    apop,
    cacheSize: cache_size,
    cacheTtlMs: Math.round(cache_ttl * 1000),
    scramIterations: scram_iterations,
  };
}

function limitsOf(l: ConfigFile['limits'], ms: (seconds: number) => number): Limits {
  const {
    max_line_length,
    max_auth_line_length,
    idle_timeout_auth,
    idle_timeout,
    max_bad_commands,
    max_connections,
    max_connections_per_address,
    max_auth_failures,
    failed_login_delay,
    failed_login_max_delay,
    tls_handshake_timeout,
    shutdown_grace,
    ...rest
  } = l;
  allHandled(rest);
  return {
    maxLineLength: max_line_length,
    maxAuthLineLength: max_auth_line_length,
    idleTimeoutAuthMs: ms(idle_timeout_auth),
    idleTimeoutMs: ms(idle_timeout),
    maxBadCommands: max_bad_commands,
    maxConnections: max_connections,
    maxConnectionsPerAddress: max_connections_per_address,
    maxAuthFailures: max_auth_failures,
    failedLoginDelayMs: ms(failed_login_delay),
    failedLoginMaxDelayMs: ms(failed_login_max_delay),
    shutdownGraceMs: ms(shutdown_grace),
    tlsHandshakeTimeoutMs: ms(tls_handshake_timeout),
  };
}

function lmtpOf(
  l: ConfigFile['lmtp'],
  optionalPath: (p: string | undefined) => string | undefined,
  ms: (seconds: number) => number,
  fail: Fail,
): LmtpConfig | undefined {
  const { address, port, socket, socket_mode, hostname, max_message_size, max_recipients, ...more } = l;
  const { max_connections, idle_timeout, recipient_lookup, recipient_delimiter, ...rest } = more;
  allHandled(rest);
  if (port !== undefined && socket !== undefined) throw fail('[lmtp] takes "port" or "socket", not both');
  if (port === undefined && socket === undefined) return undefined;
  if (!/^0?[0-7]{3}$/.test(socket_mode)) throw fail('lmtp.socket_mode must be octal like "0660"');
  return {
    address,
    port,
    socket: optionalPath(socket),
    socketMode: Number.parseInt(socket_mode, 8),
    hostname,
    maxMessageSize: max_message_size,
    maxRecipients: max_recipients,
    maxConnections: max_connections,
    idleTimeoutMs: ms(idle_timeout),
    recipientLookup: recipient_lookup,
    recipientDelimiter: recipient_delimiter,
  };
}

function metricsOf(m: ConfigFile['metrics']): MetricsConfig {
  const { enabled, address, port, process_metrics, max_connections, ...rest } = m;
  allHandled(rest);
  return { enabled, address, port, processMetrics: process_metrics, maxConnections: max_connections };
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

function checkMechanisms(list: readonly string[], fail: Fail): string[] {
  const out = list.map((m) => m.toUpperCase());
  for (const m of out) {
    if (!SERVER_SASL_MECHANISMS.includes(m)) {
      throw fail(`auth.mechanisms: unknown "${m}" (known: ${SERVER_SASL_MECHANISMS.join(', ')})`);
    }
  }
  return out;
}

function oauthOf(o: ConfigFile['oauth'], path: (p: string) => string, fail: Fail): Config['oauth'] {
  const { jwks_file, jwks_url, issuer, audience, user_claim, strip_domain, command, ...rest } = o;
  allHandled(rest);
  const jwks = jwks_file !== undefined || jwks_url !== undefined;
  if (command.length > 0) {
    if (jwks) throw fail('[oauth] takes a JWKS or a command, not both');
    return { kind: 'command', command };
  }
  if (!jwks) return undefined;
  if (jwks_file !== undefined && jwks_url !== undefined) throw fail('[oauth] takes jwks_file or jwks_url, not both');
  if (issuer === undefined || audience === undefined) throw fail('[oauth] needs "issuer" and "audience" with a JWKS');
  return {
    kind: 'jwks',
    jwksFile: jwks_file === undefined ? undefined : path(jwks_file),
    jwksUrl: jwks_url,
    issuer,
    audience,
    userClaim: user_claim,
    stripDomain: strip_domain,
  };
}
