/**
 * Prometheus metrics (prom-client); observability/endpoint.ts serves them over HTTP. Off by default
 * (`[metrics] enabled`); bind the endpoint to a private address.
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
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Maildrop, MailStore, OpenOptions } from '../storage/types.ts';
import { isStorageError } from '../storage/types.ts';

/** What a POP3 session reports as it ends (the same fields as its 'disconnect' log line). */
export interface SessionSummary {
  readonly durationMs: number;
  readonly bytes: number;
  readonly retrieved: number;
  readonly deleted: number;
}

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
