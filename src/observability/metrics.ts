/**
 * Prometheus metrics (prom-client) and the HTTP endpoint that serves them with a health check for load
 * balancers. Off by default (`[metrics] enabled`); bind it to a private address.
 *
 *   GET /metrics  Prometheus text format
 *   GET /health   200 {"status":"ok"} when every check passes, 503 with the failing checks otherwise
 *
 * Where the numbers come from:
 *   - commands and logins: the Pop3Server hooks (onCommand, onLogin);
 *   - connections, session durations, bytes sent, retrieved/deleted: the server's onSessionStart and
 *     onSessionEnd hooks (the per-session logout summary);
 *   - lock contention: instrumentStore(), which counts maildrop opens refused because another session holds
 *     the lock;
 *   - deliveries: the delivery agent's onDelivery hook;
 *   - credential cache hits and misses: the users file authenticator's onCacheLookup hook.
 *
 * Label values are bounded: verbs outside the POP3 command set are counted as "OTHER", so a client sending
 * random words cannot grow the registry.
 */
import cluster from 'node:cluster';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { AggregatorRegistry, Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Maildrop, MailStore, OpenOptions } from '../storage/types.ts';
import { isStorageError } from '../storage/types.ts';

/** What a POP3 session reports as it ends (the same fields as its 'disconnect' log line). */
export interface SessionSummary {
  readonly durationMs: number;
  readonly bytes: number;
  readonly retrieved: number;
  readonly deleted: number;
}

/** Where the endpoint listens. */
export interface MetricsEndpointAddress {
  readonly address: string;
  readonly port: number;
  /** metrics.max_connections (default METRICS_MAX_CONNECTIONS). */
  readonly maxConnections?: number;
}

/**
 * Limits of the HTTP endpoint (issue 13 #10: 20 000 idle connections to it exhausted the process's file
 * descriptors, and POP3 and LMTP clients were then closed without a byte). A scraper and a load balancer's
 * health check need a handful of connections and answers within milliseconds, so: a small connection cap
 * (connections beyond it are closed at once), and short timeouts for the request headers, the whole request
 * and an idle keep-alive connection; a connection that sends nothing is closed after `idleMs` of silence.
 */
export const METRICS_MAX_CONNECTIONS = 32;
export const METRICS_TIMEOUTS = { headersMs: 5_000, requestMs: 10_000, keepAliveMs: 5_000, idleMs: 5_000 };

export interface MetricsOptions {
  /**
   * The label values the server's hooks can report, handed over by whoever builds the server (the server's
   * own verb table and mechanism list); anything else is counted as "OTHER".
   */
  readonly labels?: { readonly verbs: readonly string[]; readonly mechanisms: readonly string[] };
  /** Node process metrics (CPU, memory, event loop, handles). Default true. */
  readonly processMetrics?: boolean;
  /** Registry to fill (default: a new one, so tests and several servers in one process stay apart). */
  readonly registry?: Registry;
}

export class Metrics {
  readonly registry: Registry;
  readonly connections: Counter<'protocol'>;
  readonly sessionsActive: Gauge;
  readonly logins: Counter<'mechanism' | 'result'>;
  readonly commands: Counter<'verb' | 'result'>;
  readonly bytesSent: Counter;
  readonly messagesRetrieved: Counter;
  readonly messagesDeleted: Counter;
  readonly sessionDuration: Histogram;
  readonly lockContention: Counter;
  readonly deliveries: Counter<'result'>;
  readonly deliveredBytes: Counter;
  readonly credentialCache: Counter<'result'>;
  private active = 0;
  private readonly knownVerbs: ReadonlySet<string>;
  private readonly knownMechanisms: ReadonlySet<string>;

  constructor(options: MetricsOptions = {}) {
    this.registry = options.registry ?? new Registry();
    this.knownVerbs = new Set(options.labels?.verbs);
    this.knownMechanisms = new Set(options.labels?.mechanisms);
    const registers = [this.registry];
    this.connections = new Counter({
      name: 'postern_connections_total',
      help: 'Connections accepted, by protocol.',
      labelNames: ['protocol'],
      registers,
    });
    this.sessionsActive = new Gauge({
      name: 'postern_pop3_sessions_active',
      help: 'POP3 sessions open now.',
      registers,
      collect: () => this.sessionsActive.set(this.active),
    });
    this.logins = new Counter({
      name: 'postern_pop3_logins_total',
      help: 'POP3 login attempts, by SASL mechanism (USER for USER/PASS, APOP) and result (ok, fail).',
      labelNames: ['mechanism', 'result'],
      registers,
    });
    this.commands = new Counter({
      name: 'postern_pop3_commands_total',
      help: 'POP3 commands, by verb and result (ok, error, unknown: not valid in the state or not a command).',
      labelNames: ['verb', 'result'],
      registers,
    });
    this.bytesSent = new Counter({
      // The unit before _total, as Prometheus names counters (…_bytes_total).
      name: 'postern_pop3_sent_bytes_total',
      help: 'Octets sent to POP3 clients (counted when a session ends).',
      registers,
    });
    this.messagesRetrieved = new Counter({
      name: 'postern_pop3_messages_retrieved_total',
      help: 'Messages sent with RETR (counted when a session ends).',
      registers,
    });
    this.messagesDeleted = new Counter({
      name: 'postern_pop3_messages_deleted_total',
      help: 'Messages removed in the UPDATE state (counted when a session ends).',
      registers,
    });
    this.sessionDuration = new Histogram({
      name: 'postern_pop3_session_duration_seconds',
      help: 'Duration of POP3 sessions, from connection to close.',
      buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600],
      registers,
    });
    this.lockContention = new Counter({
      name: 'postern_maildrop_lock_contention_total',
      help: 'Maildrop opens refused because another session holds the lock ([IN-USE]).',
      registers,
    });
    this.deliveries = new Counter({
      name: 'postern_deliveries_total',
      help:
        'Recipients of a delivery (LMTP or postern deliver; one message to 3 recipients counts 3), by result: ' +
        'delivered (stored durably), quota (over quota), temp (failed, the MTA retries), perm (refused for good), ' +
        'nouser (no such user).',
      labelNames: ['result'],
      registers,
    });
    this.deliveredBytes = new Counter({
      name: 'postern_delivered_bytes_total',
      help: 'Octets (as transmitted) stored by deliveries.',
      registers,
    });
    this.credentialCache = new Counter({
      name: 'postern_auth_cache_lookups_total',
      help: 'Password logins of known users looked up in the credential cache, by result (hit: no password hash computed, miss).',
      labelNames: ['result'],
      registers,
    });
    // Under the standard names (process_resident_memory_bytes, process_cpu_seconds_total,
    // nodejs_eventloop_lag_seconds, …) so that stock Node.js and process dashboards work unchanged.
    if (options.processMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  /** Pop3Server `hooks`. */
  get serverHooks(): {
    onCommand(verb: string, result: 'ok' | 'error' | 'unknown'): void;
    onLogin(mechanism: string, result: 'ok' | 'fail'): void;
    onSessionStart(): void;
    onSessionEnd(summary: SessionSummary): void;
  } {
    return {
      onSessionStart: () => this.sessionStarted(),
      onSessionEnd: (summary) => this.sessionEnded(summary),
      onCommand: (verb, result) => {
        const v = verb.toUpperCase();
        this.commands.inc({ verb: this.knownVerbs.has(v) ? v : 'OTHER', result });
      },
      onLogin: (mechanism, result) => {
        const m = mechanism.toUpperCase();
        this.logins.inc({ mechanism: this.knownMechanisms.has(m) ? m : 'OTHER', result });
      },
    };
  }

  /** DeliveryAgent `hooks`. */
  get deliveryHooks(): { onDelivery(status: string, octets: number): void } {
    return {
      onDelivery: (status, octets) => {
        this.deliveries.inc({ result: status });
        if (octets > 0) this.deliveredBytes.inc(octets);
      },
    };
  }

  /** A POP3 connection became a session. */
  sessionStarted(): void {
    this.active++;
    this.connections.inc({ protocol: 'pop3' });
  }

  /** A POP3 session ended, with its logout summary. */
  sessionEnded(summary: SessionSummary): void {
    this.active = Math.max(0, this.active - 1);
    if (typeof summary.durationMs === 'number') this.sessionDuration.observe(summary.durationMs / 1000);
    if (typeof summary.bytes === 'number' && summary.bytes > 0) this.bytesSent.inc(summary.bytes);
    if (typeof summary.retrieved === 'number' && summary.retrieved > 0) this.messagesRetrieved.inc(summary.retrieved);
    if (typeof summary.deleted === 'number' && summary.deleted > 0) this.messagesDeleted.inc(summary.deleted);
  }

  /** The registry's exposition text (Prometheus format). */
  text(): Promise<string> {
    return this.registry.metrics();
  }
}

/** A MailStore that counts lock contention; everything else passes straight through. */
export function instrumentStore<S extends MailStore>(store: S, metrics: Metrics): S {
  return new Proxy(store, {
    get(target, prop) {
      if (prop === 'openMaildrop') {
        return async (mailboxId: string, options?: OpenOptions): Promise<Maildrop> => {
          try {
            return await target.openMaildrop(mailboxId, options);
          } catch (err) {
            if (isStorageError(err, 'inuse')) metrics.lockContention.inc();
            throw err;
          }
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

export interface HealthCheck {
  readonly name: string;
  /** Resolves true when healthy; false or a rejection when not. Bounded by HEALTH_TIMEOUT_MS. */
  check(): Promise<boolean>;
}

/** A check slower than this fails: a load balancer must get its answer quickly. */
const HEALTH_TIMEOUT_MS = 2_000;

export interface MetricsServerOptions {
  readonly address: string;
  readonly port: number;
  /** Produces the exposition text (a registry's metrics(), or the cluster-wide aggregate). */
  readonly metrics: () => Promise<string>;
  readonly contentType?: string;
  readonly checks?: readonly HealthCheck[];
  readonly logger?: Logger;
  /** Concurrent connections (default METRICS_MAX_CONNECTIONS). */
  readonly maxConnections?: number;
  /** Timeouts (default METRICS_TIMEOUTS); tests shorten them. */
  readonly timeouts?: typeof METRICS_TIMEOUTS;
}

export class MetricsServer {
  private readonly http: Server;
  port = 0;

  constructor(private readonly options: MetricsServerOptions) {
    const t = options.timeouts ?? METRICS_TIMEOUTS;
    this.http = createServer(
      {
        headersTimeout: t.headersMs,
        requestTimeout: t.requestMs,
        keepAliveTimeout: t.keepAliveMs,
        // No connectionsCheckingInterval: on Node 20 setting it stops the idle-socket timeout below from firing.
      },
      (req, res) => {
        const path = (req.url ?? '/').split('?')[0];
        if (req.method !== 'GET' && req.method !== 'HEAD') {
          res.writeHead(405, { allow: 'GET, HEAD' }).end();
          return;
        }
        if (path === '/metrics') {
          this.options.metrics().then(
            (text) => {
              res.writeHead(200, { 'content-type': this.options.contentType ?? Registry.PROMETHEUS_CONTENT_TYPE });
              res.end(req.method === 'HEAD' ? undefined : text);
            },
            (err: unknown) => {
              this.options.logger?.error({ err }, 'metrics collection failed');
              res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics collection failed\n');
            },
          );
          return;
        }
        if (path === '/health') {
          void this.health().then((failed) => {
            const body = JSON.stringify(failed.length === 0 ? { status: 'ok' } : { status: 'fail', failed });
            res.writeHead(failed.length === 0 ? 200 : 503, {
              'content-type': 'application/json',
              'cache-control': 'no-store',
            });
            res.end(req.method === 'HEAD' ? undefined : `${body}\n`);
          });
          return;
        }
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      },
    );
    // Beyond the cap a connection is closed at once: its descriptor is back before it could starve POP3.
    this.http.maxConnections = options.maxConnections ?? METRICS_MAX_CONNECTIONS;
    // A connection that sends nothing at all is closed after this much silence (socket inactivity).
    this.http.timeout = t.idleMs;
  }

  /** Names of the failing checks. */
  async health(): Promise<string[]> {
    const results = await Promise.all(
      (this.options.checks ?? []).map(async (c) => {
        let timer: NodeJS.Timeout | undefined;
        const timeout = new Promise<false>((r) => {
          timer = setTimeout(() => r(false), HEALTH_TIMEOUT_MS);
        });
        try {
          const ok = await Promise.race([c.check(), timeout]);
          return ok ? null : c.name;
        } catch {
          return c.name;
        } finally {
          clearTimeout(timer);
        }
      }),
    );
    return results.filter((n): n is string => n !== null);
  }

  async listen(): Promise<number> {
    this.http.listen(this.options.port, this.options.address);
    await once(this.http, 'listening');
    const addr = this.http.address();
    this.port = typeof addr === 'object' && addr !== null ? addr.port : this.options.port;
    this.options.logger?.info({ address: this.options.address, port: this.port }, 'metrics listening');
    return this.port;
  }

  /** Lets the process exit while the endpoint is still open. */
  unref(): void {
    this.http.unref();
  }

  async close(): Promise<void> {
    const closed = new Promise<void>((r) => this.http.close(() => r()));
    this.http.closeAllConnections();
    await closed;
  }
}

/**
 * With cluster workers, each worker counts in its own registry and the primary serves the sum: workers call
 * this to offer their registry to the primary's AggregatorRegistry (prom-client's cluster support).
 */
export function offerToClusterPrimary(metrics: Metrics): void {
  if (!cluster.isWorker) return;
  // Constructing one installs prom-client's worker-side listener for the primary's requests.
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([metrics.registry]);
}

/** The primary's view over all workers' registries. */
export function clusterMetricsSource(): () => Promise<string> {
  const aggregator = new AggregatorRegistry();
  return () => aggregator.clusterMetrics();
}

/**
 * Starts the endpoint for `serve`: in a single process it serves this process's registry, with health checks
 * that the POP3 listeners are bound and the mail root is writable; in a cluster worker it only offers the
 * registry to the primary (see startClusterMetricsEndpoint), since workers share ports.
 */
export async function startMetricsEndpoint(
  config: MetricsEndpointAddress,
  metrics: Metrics,
  state: { readonly pop3: { readonly listeners: readonly unknown[] }; readonly mailRoot: string },
  logger: Logger,
): Promise<MetricsServer | undefined> {
  if (cluster.isWorker) {
    offerToClusterPrimary(metrics);
    return undefined;
  }
  const server = new MetricsServer({
    address: config.address,
    port: config.port,
    maxConnections: config.maxConnections,
    metrics: () => metrics.text(),
    contentType: metrics.registry.contentType,
    checks: [
      { name: 'pop3', check: async () => state.pop3.listeners.length > 0 },
      {
        name: 'storage',
        check: async () => {
          await access(state.mailRoot, constants.W_OK);
          return true;
        },
      },
    ],
    logger,
  });
  await server.listen();
  return server;
}

/** The cluster primary's endpoint: the sum over all workers; healthy while at least one worker runs. */
export function startClusterMetricsEndpoint(config: MetricsEndpointAddress, logger: Logger): void {
  const server = new MetricsServer({
    address: config.address,
    port: config.port,
    maxConnections: config.maxConnections,
    metrics: clusterMetricsSource(),
    checks: [{ name: 'workers', check: async () => Object.keys(cluster.workers ?? {}).length > 0 }],
    logger,
  });
  server.listen().then(
    // The primary exits once its workers have: this endpoint must not keep it alive.
    () => server.unref(),
    (err: unknown) => logger.error({ err }, 'metrics endpoint failed to start'),
  );
}
