import cluster from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { createSecureContext } from 'node:tls';
import type { Logger } from 'pino';
import { createCommandBearerVerifier } from '../auth/sasl/bearer-command.ts';
import { type BearerVerifier, createJwtBearerVerifier } from '../auth/sasl/jwt.ts';
import type { Authenticator } from '../auth/types.ts';
import type { Config } from '../config/config.ts';
import { DeliveryAgent, type DeliveryHooks } from '../delivery/agent.ts';
import { type LmtpConfig, LmtpListener } from '../delivery/lmtp.ts';
import { startClusterMetricsEndpoint, startMetricsEndpoint } from '../observability/endpoint.ts';
import { instrumentStore, Metrics } from '../observability/metrics.ts';
import { ClusterCoordinator, LocalCoordinator, serveCoordinator } from '../server/coordinator.ts';
import { HOOK_LABELS, Pop3Server, type TlsMaterial } from '../server/server.ts';
import { SharedPenaltyCoordinator } from '../storage/postgres/penalty.ts';
import type { MailStore, QuotaSource } from '../storage/types.ts';
import { Databases, openDeliveryUsers, openMailStore, openUserDatabase, type UserDatabase } from './backends.ts';

export interface Running {
  readonly server: Pop3Server;
  readonly store: MailStore;
  readonly authenticator: UserDatabase;
  /** Re-reads the certificate and the user file (SIGHUP); open sessions are not touched. */
  reload(): Promise<void>;
  stop(graceMs?: number): Promise<void>;
}

/**
 * Reads the certificates and keys, and checks that each pair loads, so that a bad file is named (by its key
 * and path) at start and on SIGHUP, where OpenSSL alone would say only "no start line" or "key values
 * mismatch".
 */
function readTls(config: Config): TlsMaterial | undefined {
  if (!config.tls) return undefined;
  const read = (key: string, path: string): Buffer => {
    try {
      return readFileSync(path);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const text = code === 'ENOENT' ? 'does not exist' : code === 'EACCES' ? 'not readable' : (err as Error).message;
      throw new StartupError(`${key} = "${path}": ${text}`, { cause: err });
    }
  };
  const pair = (prefix: string, certPath: string, keyPath: string) => {
    const cert = read(`${prefix}.cert`, certPath);
    const key = read(`${prefix}.key`, keyPath);
    try {
      createSecureContext({ cert, key });
    } catch (err) {
      throw new StartupError(
        `${prefix}.cert = "${certPath}", ${prefix}.key = "${keyPath}": ${(err as Error).message}`,
        { cause: err },
      );
    }
    return { cert, key };
  };
  return {
    ...pair('tls', config.tls.cert, config.tls.key),
    minVersion: config.tls.minVersion,
    clientCa: config.tls.clientCa ? read('tls.client_ca', config.tls.clientCa) : undefined,
    clientCertUser: config.tls.clientCertUser,
    sni: config.certificates.map((c, i) => ({ names: c.names, ...pair(`certificate[${i + 1}]`, c.cert, c.key) })),
  };
}

/** A listener that could not start; `postern serve` exits 78 (EX_CONFIG) naming the config key. */
export class StartupError extends Error {
  override readonly name = 'StartupError';
}

const ERRNO_TEXT: Record<string, string> = {
  EADDRINUSE: 'address already in use',
  EADDRNOTAVAIL: 'address not available on this machine',
  EACCES: 'permission denied',
  ENOENT: 'no such directory',
};

async function starting<T>(key: string, start: () => Promise<T>): Promise<T> {
  try {
    return await start();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const text = code && ERRNO_TEXT[code] ? `${ERRNO_TEXT[code]} (${code})` : (err as Error).message;
    const { address, port } = err as { address?: string; port?: number };
    const where = port ? ` ${address}:${port}` : address ? ` ${address}` : '';
    throw new StartupError(`${key}${where}: ${text}`, { cause: err });
  }
}

/** Builds the store, the user database and the server from a validated config, and starts listening. */
export async function startServer(config: Config, logger: Logger): Promise<Running> {
  const dbs = new Databases(logger);
  let store: MailStore;
  let authenticator: UserDatabase;
  const metrics = config.metrics.enabled
    ? new Metrics({ processMetrics: config.metrics.processMetrics, labels: HOOK_LABELS })
    : undefined;
  try {
    // A PostgreSQL store or user database is checked here: a schema this program does not know stops it.
    store = await openMailStore(config, dbs, { warn: (fields, msg) => logger.warn(fields, msg) });
    authenticator = await openUserDatabase(
      config,
      dbs,
      logger,
      metrics ? (result) => metrics.credentialCache.inc({ result }) : undefined,
    );
  } catch (e) {
    await dbs.close();
    throw e;
  }
  const throttle = { baseMs: config.limits.failedLoginDelayMs, maxMs: config.limits.failedLoginMaxDelayMs };
  const processCoordinator = cluster.isWorker ? new ClusterCoordinator(throttle) : new LocalCoordinator(throttle);
  // With a PostgreSQL store the failed-login penalty is kept in the database, shared by every frontend.
  const shared =
    config.storage.driver === 'postgres'
      ? new SharedPenaltyCoordinator(dbs.pool(config.storage.postgres), processCoordinator, throttle)
      : undefined;
  const coordinator = shared ?? processCoordinator;
  const server = new Pop3Server({
    store: metrics ? instrumentStore(store, metrics) : store,
    authenticator,
    logger,
    hooks: metrics?.serverHooks,
    limits: config.limits,
    hostname: config.server.hostname ?? osHostname(),
    greeting: config.server.greeting,
    implementation: config.server.implementation,
    allowPlaintextAuth: config.server.allowPlaintextAuth,
    loopbackIsSecure: config.server.loopbackIsSecure,
    tls: readTls(config),
    proxy: config.proxy,
    policy: config.policy,
    saslMechanisms: config.auth.mechanisms,
    apop: config.auth.apop,
    scramIterations: config.auth.scramIterations,
    // What the metrics endpoint and LMTP may hold is kept out of the POP3 descriptor budget (descriptors.ts).
    otherDescriptors:
      (config.metrics.enabled ? config.metrics.maxConnections : 0) + (config.lmtp ? config.lmtp.maxConnections : 0),
    bearer: bearerOf(config, authenticator, logger),
    coordinator,
  });
  // Any listener, the LMTP socket or the metrics port that cannot start stops everything already started and
  // fails the start (exit 78), so systemd sees the failure instead of a server half up.
  let lmtp: Awaited<ReturnType<typeof startLmtp>> | undefined;
  let endpoint: Awaited<ReturnType<typeof startMetricsEndpoint>> | undefined;
  try {
    await starting('[[listen]]', () => server.listen(config.listen));
    const lmtpConfig = config.lmtp;
    if (lmtpConfig) {
      const deliveryUsers = await openDeliveryUsers(config, dbs, (msg) => logger.warn(msg));
      const key = lmtpConfig.socket !== undefined ? 'lmtp.socket' : 'lmtp.port';
      lmtp = await starting(key, () =>
        startLmtp(config, lmtpConfig, store, logger, deliveryUsers, metrics?.deliveryHooks),
      );
    }
    if (metrics) {
      endpoint = await starting('metrics.port', () =>
        startMetricsEndpoint(config.metrics, metrics, { pop3: server, mailRoot: config.storage.root }, logger),
      );
    }
  } catch (err) {
    await Promise.allSettled([server.close(0), lmtp?.close(), endpoint?.close()]);
    await store.close().catch(() => {});
    await dbs.close();
    throw err;
  }
  return {
    server,
    store,
    authenticator,
    async reload() {
      const tls = readTls(config);
      if (tls) server.setTls(tls);
      await authenticator.reload();
      logger.info('reloaded certificate and users');
    },
    async stop(graceMs) {
      await Promise.all([server.close(graceMs), lmtp?.close(), endpoint?.close()]);
      await store.close();
      shared?.close();
      (authenticator as { close?(): void }).close?.();
      await dbs.close();
    },
  };
}

/**
 * Runs until SIGTERM/SIGINT; SIGHUP reloads. Returns the exit code. With `server.workers` > 1 the process
 * becomes a Node cluster primary that forks that many workers sharing the listening sockets; maildrop locks
 * live in the store (lock files), so two workers never serve one maildrop at once.
 */
export async function serveForever(config: Config, logger: Logger): Promise<number> {
  if (config.server.workers > 1 && cluster.isPrimary) return runPrimary(config, logger);
  const running = await startServer(config, logger);
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal, sessions: running.server.sessionCount }, 'shutting down');
      running.stop().then(
        () => {
          logger.info('stopped');
          logger.flush();
          // A worker's IPC channel (used by the coordinator) would keep it alive; let it go.
          if (cluster.isWorker) process.disconnect();
          resolve(0);
        },
        (err) => {
          logger.error({ err }, 'shutdown failed');
          logger.flush();
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      // The previous certificate and users stay in use; the message names the file that failed.
      running.reload().catch((err) => logger.error({ err: (err as Error).message }, 'reload failed'));
    });
  });
}

/** The cluster primary: forks workers, restarts ones that die unexpectedly, relays signals. */
function runPrimary(config: Config, logger: Logger): Promise<number> {
  let stopping = false;
  // Every worker must make up the same SCRAM salts for unknown users, or comparing two workers' answers
  // would tell which users exist.
  process.env.POSTERN_SCRAM_FAKE_KEY = randomBytes(32).toString('hex');
  serveCoordinator({ baseMs: config.limits.failedLoginDelayMs, maxMs: config.limits.failedLoginMaxDelayMs });
  if (config.metrics.enabled) startClusterMetricsEndpoint(config.metrics, logger);
  const fork = () => cluster.fork();
  for (let i = 0; i < config.server.workers; i++) fork();
  cluster.on('exit', (worker, code, signal) => {
    if (stopping) return;
    logger.error({ worker: worker.process.pid, code, signal }, 'worker died; starting a new one');
    setTimeout(fork, 1000).unref();
  });
  return new Promise((resolve) => {
    const stop = (signal: NodeJS.Signals) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal }, 'stopping workers');
      const workers = Object.values(cluster.workers ?? {});
      let left = workers.length;
      if (left === 0) resolve(0);
      for (const w of workers) {
        w?.once('exit', () => {
          if (--left === 0) resolve(0);
        });
        w?.process.kill(signal);
      }
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
    });
  });
}

/** The OAUTHBEARER/XOAUTH2 token check from [oauth], if any. */
function bearerOf(config: Config, users: UserDatabase, logger: Logger): BearerVerifier | undefined {
  const o = config.oauth;
  if (!o) return undefined;
  const lookup = (user: string) => users.lookup(user);
  if (o.kind === 'command') return createCommandBearerVerifier(o.command, { lookup, logger });
  return createJwtBearerVerifier({
    jwksFile: o.jwksFile,
    jwksUrl: o.jwksUrl,
    issuer: o.issuer,
    audience: o.audience,
    userClaim: o.userClaim,
    mapUser: o.stripDomain ? (v) => v.replace(/@[^@]*$/, '') : undefined,
    lookup,
    logger,
  });
}

/**
 * The delivery pipeline for `config` (users, quotas, recipient rules) over `store`, and the LMTP listener in
 * front of it; `serve` runs it beside the POP3 server.
 */
async function startLmtp(
  config: Config,
  lmtp: LmtpConfig,
  store: MailStore,
  logger: Logger,
  users: Pick<Authenticator, 'lookup'> & QuotaSource,
  hooks?: DeliveryHooks,
): Promise<LmtpListener> {
  const agent = new DeliveryAgent({
    store,
    users,
    quotas: users,
    rules: { lookup: lmtp.recipientLookup, delimiter: lmtp.recipientDelimiter },
    logger: logger.child({ component: 'delivery' }),
    hooks,
  });
  const listener = new LmtpListener({
    agent,
    config: lmtp,
    hostname: lmtp.hostname ?? config.server.hostname ?? osHostname(),
    quotaTempfail: config.quota.tempfail,
    logger,
    closeGraceMs: config.limits.shutdownGraceMs,
  });
  await listener.listen();
  return listener;
}
