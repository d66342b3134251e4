/**
 * The HTTP endpoint that serves the metrics (observability/metrics.ts) with a health check for load balancers:
 *
 *   GET /metrics  Prometheus text format
 *   GET /health   200 {"status":"ok"} when every check passes, 503 with the failing checks otherwise
 *
 * With cluster workers, the primary serves the sum of the workers' registries.
 */
import cluster from 'node:cluster';
import { once } from 'node:events';
import { access, constants } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { Logger } from 'pino';
import { AggregatorRegistry, Registry } from 'prom-client';
import type { Metrics } from './metrics.ts';

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
