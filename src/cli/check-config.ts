/**
 * `postern check-config`: validates the config, checks what `serve` will need from the machine (preflight.ts)
 * and prints what it sets up, including the SASL mechanisms CAPA will really offer and why the others are off.
 * Exit 0 when `serve` would start, 78 (EX_CONFIG) when not.
 */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { listUsers } from '../auth/passwd-edit.ts';
import { type PasswdIssue, parsePasswdBytes } from '../auth/passwd-format.ts';
import type { Config } from '../config/config.ts';
import { SERVER_SASL_MECHANISMS } from '../server/options.ts';
import { type SaslFacts, saslOffered, saslUnavailable } from '../server/saslOffer.ts';
import { formatProblem, rootOnlyUsersFile, serveProblems } from './preflight.ts';
import { EX_CONFIG } from './sysexits.ts';

const HELP = `Usage: postern check-config [--config FILE]

Validates the config (unknown keys and wrong types are errors naming the key and line), checks what
\`postern serve\` needs (certificate and key readable, users file present, mail root writable, LMTP socket
directory), run as the user the server runs as, and prints the listeners, store, users file and the SASL
mechanisms it will offer. Exit code 0 when \`serve\` would start, 78 when not.
`;

interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

type ConfigModule = typeof import('../config/config.ts');

export async function runCheckConfig(
  args: string[],
  io: Io,
  resolve: (file: string | undefined, cfg: ConfigModule) => Config,
): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    io.stdout.write(HELP);
    return 0;
  }
  const config = resolve(values.config, await import('../config/config.ts'));
  const problems = serveProblems(config).map(formatProblem);
  const usersInDb = config.auth.driver === 'postgres';
  // Run as root, the read checks pass for any file; say when the service user will not be able to read it.
  const warnings =
    !usersInDb && rootOnlyUsersFile(config.auth.usersFile)
      ? [
          `auth.users_file = "${config.auth.usersFile}": root-only (0600 root); a server running as another ` +
            'user cannot read it: chown it to the service user',
        ]
      : [];
  // With [auth] driver = "postgres" the users file is not read by anything: it is neither reported nor asked
  // whether some user has a shared secret (the database is, as the server asks it).
  const users = usersInDb ? { summary: '', issues: [] } : await usersFileReport(config.auth.usersFile);
  const secrets = usersInDb ? await databaseSecrets(config) : await fileSecrets(config.auth.usersFile);
  const lines = [
    problems.length === 0 ? 'config OK' : 'config has problems: `postern serve` would not start',
    ...problems.map((p) => `  problem ${p}`),
    ...warnings.map((w) => `  warning ${w}`),
    ...config.listen.map((l) => `  listen  ${l.address}:${l.port} (${l.tls})`),
    config.storage.driver === 'postgres'
      ? `  store   postgres ${redactUrl(config.storage.postgres.url)} (pool ${config.storage.postgres.poolSize}, lease ${config.storage.postgres.leaseMs / 1000} s)`
      : `  store   ${config.storage.driver} ${config.storage.root}/${config.storage.layout}`,
    config.auth.driver === 'postgres'
      ? `  users   postgres ${redactUrl(config.auth.postgres.url)}`
      : `  users   ${config.auth.usersFile} (${users.summary})`,
    `  tls     ${config.tls ? `${config.tls.cert} (min ${config.tls.minVersion})` : 'not configured'}`,
    `  lmtp    ${config.lmtp ? (config.lmtp.socket ?? `${config.lmtp.address}:${config.lmtp.port}`) : 'off'}`,
    `  metrics ${config.metrics.enabled ? `http://${config.metrics.address}:${config.metrics.port}/metrics` : 'off'}`,
    ...saslLines(config, secrets),
    // What the server will skip (and log) when it reads the users file: by line number, never the line's text.
    ...users.issues.map((issue) => `  warning ${config.auth.usersFile}:${issue.lineNo}: ${issue.message}`),
  ];
  (problems.length === 0 ? io.stdout : io.stderr).write(`${lines.join('\n')}\n`);
  if (problems.length > 0) return EX_CONFIG;
  if (config.storage.driver !== 'postgres' && config.auth.driver !== 'postgres') return 0;
  return (await databaseReport(config, io)) ? 0 : EX_CONFIG;
}

/** Connects to the PostgreSQL store or user database and compares its schema version with ours. */
async function databaseReport(config: Config, io: Io): Promise<boolean> {
  const [{ createPgPool }, { SCHEMA_VERSION, schemaVersion }, { postgresOf }] = await Promise.all([
    import('../storage/postgres/pool.ts'),
    import('../storage/postgres/schema.ts'),
    import('./db.ts'),
  ]);
  const pool = createPgPool({ ...postgresOf(config), poolSize: 1, connectTimeoutMs: 5_000 });
  try {
    const v = await schemaVersion(pool);
    io.stdout.write(
      `  database schema ${v === null ? 'none' : `version ${v}`} (this Postern needs ${SCHEMA_VERSION})\n`,
    );
    if (v === SCHEMA_VERSION) return true;
    io.stderr.write('  problem the database schema does not match: run `postern db migrate`\n');
    return false;
  } catch (e) {
    io.stderr.write(`  problem cannot reach the database: ${(e as Error).message}\n`);
    return false;
  } finally {
    await pool.end().catch(() => {});
  }
}

/** A connection URL without its password, for output. */
function redactUrl(url: string | undefined): string {
  if (url === undefined) return '(PG* environment variables)';
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable url)';
  }
}

/** Whether some user of the users file has a shared secret (CRAM-MD5, APOP). */
async function fileSecrets(file: string): Promise<boolean> {
  try {
    return (await listUsers(file)).some((u) => u.hasSharedSecret);
  } catch {
    // An unreadable users file is reported as a problem above; here it means no shared secrets.
    return false;
  }
}

/**
 * Whether some user in the PostgreSQL user database has a shared secret, asked the way the server asks it
 * (PostgresUserDb's flags); undefined when the database cannot be read (databaseReport says why).
 */
async function databaseSecrets(config: Config): Promise<boolean | undefined> {
  const [{ createPgPool }, { PostgresUserDb }] = await Promise.all([
    import('../storage/postgres/pool.ts'),
    import('../auth/postgres.ts'),
  ]);
  const pool = createPgPool({ ...config.auth.postgres, poolSize: 1, connectTimeoutMs: 5_000 });
  try {
    const users = new PostgresUserDb(pool);
    await users.reload();
    return users.hasSharedSecrets();
  } catch {
    return undefined;
  } finally {
    await pool.end().catch(() => {});
  }
}

/**
 * What CAPA will list under SASL, on a TLS connection and on a cleartext one, and why the rest is off.
 * `secrets`: whether some user has a shared secret; undefined when the user database cannot be read.
 */
function saslLines(config: Config, secrets: boolean | undefined): string[] {
  const sharedSecrets = secrets === true;
  const enabled = config.auth.mechanisms;
  const base = {
    sharedSecrets,
    scram: true,
    bearer: config.oauth !== undefined,
    clientCertificate: config.tls?.clientCa !== undefined,
  };
  const secure: SaslFacts = { ...base, plaintextAllowed: true };
  const clear: SaslFacts = { ...base, plaintextAllowed: config.server.allowPlaintextAuth, clientCertificate: false };
  const onTls = saslOffered(enabled, secure);
  const onClear = saslOffered(enabled, clear);
  const hasTls = config.listen.some((l) => l.tls !== 'none');
  const hasClear = config.listen.some((l) => l.tls !== 'implicit');
  const out: string[] = [];
  const show = (list: string[]) => (list.length > 0 ? list.join(' ') : '(none)');
  if (hasTls) out.push(`  sasl    over TLS: ${show(onTls)}`);
  if (hasClear) {
    const from = config.server.loopbackIsSecure ? ' from other hosts (loopback counts as TLS)' : '';
    out.push(`  sasl    unencrypted${from}: ${show(onClear)}`);
  }
  for (const m of SERVER_SASL_MECHANISMS) {
    if (!enabled.includes(m)) out.push(`          ${m} off: not in auth.mechanisms`);
    else if (m === 'CRAM-MD5' && secrets === undefined)
      out.push(`          ${m} unknown: the user database cannot be read (offered when some user has a shared secret)`);
    else if (!onTls.includes(m)) out.push(`          ${m} off: ${saslUnavailable(m, secure)}`);
    else if (hasClear && !onClear.includes(m)) out.push(`          ${m} not unencrypted: ${saslUnavailable(m, clear)}`);
    else if (m === 'EXTERNAL')
      out.push('          EXTERNAL only to clients presenting a certificate from tls.client_ca');
  }
  return out;
}

/** The users file as the server will read it: how many users, and the lines it skips or warns about. */
async function usersFileReport(path: string): Promise<{ summary: string; issues: readonly PasswdIssue[] }> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const missing = (err as NodeJS.ErrnoException).code === 'ENOENT';
    return { summary: missing ? 'missing: no user can log in' : `unreadable: ${(err as Error).message}`, issues: [] };
  }
  const { users, issues } = parsePasswdBytes(bytes);
  const n = issues.length;
  return { summary: `${users.size} users${n > 0 ? `; ${n} line${n === 1 ? '' : 's'} to check, below` : ''}`, issues };
}
