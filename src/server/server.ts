/**
 * The POP3 server: listeners (plain with STLS, implicit TLS per RFC 8314, or plain only), connection limits,
 * and graceful shutdown. Sessions do the protocol; this file owns sockets until a session takes one.
 */
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { BlockList, createServer as createNetServer, isIP, type Server as NetServer, type Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { BearerVerifier } from '../auth/sasl/jwt.ts';
import { SCRAM_DEFAULT_ITERATIONS } from '../auth/sasl/scram.ts';
import { Pop3Error, RespCode } from '../protocol/errors.ts';
import { normalizeAddress, parseCidr } from './address.ts';
import { commands } from './commands/index.ts';
import type { Policy, ServerContext, ServerHooks, SessionHandle, SessionSettings } from './context.ts';
import { type Coordinator, LocalCoordinator } from './coordinator.ts';
import { DESCRIPTOR_RESERVE, sessionBudget } from './descriptors.ts';
import { type ListenerConfig, SERVER_SASL_MECHANISMS } from './options.ts';
import { parseProxyHeader, V2_MAX, withPrefix } from './proxy.ts';
import { Session } from './session.ts';
import { secureContextOf, type TlsMaterial } from './tls.ts';

export type { TlsMaterial } from './tls.ts';

/** Every value the hooks report as a verb or a login mechanism: bounded label sets for metrics. */
export const HOOK_LABELS: { readonly verbs: readonly string[]; readonly mechanisms: readonly string[] } = {
  verbs: Object.keys(commands),
  mechanisms: ['USER', 'APOP', ...SERVER_SASL_MECHANISMS],
};

export interface ServerOptions extends SessionSettings {
  readonly tls?: TlsMaterial;
  readonly hooks?: ServerHooks;
  /** SASL mechanisms to offer (default: all that can work); see ServerContext. */
  readonly saslMechanisms?: readonly string[];
  readonly bearer?: BearerVerifier;
  /** Offer APOP to users with a shared secret (default true). */
  readonly apop?: boolean;
  /** Key for SCRAM's made-up salts (default: POSTERN_SCRAM_FAKE_KEY from the cluster primary, or random). */
  readonly scramFakeSaltKey?: Buffer;
  /** SCRAM iterations announced for unknown users: `auth.scram_iterations` (default SCRAM_DEFAULT_ITERATIONS). */
  readonly scramIterations?: number;
  /** RFC 2449 LOGIN-DELAY and EXPIRE defaults; none when absent. */
  readonly policy?: Policy;
  /** Shared per-address state; defaults to this process only (see coordinator.ts for cluster workers). */
  readonly coordinator?: Coordinator;
  /**
   * File descriptors the process's other listeners may hold (the metrics cap, LMTP's max_connections): kept
   * out of the POP3 session budget, so they can never starve POP3 of descriptors (descriptors.ts).
   */
  readonly otherDescriptors?: number;
  /** PROXY protocol: peers allowed to send the header, and how long to wait for it. */
  readonly proxy?: { readonly trusted: readonly string[]; readonly timeoutMs: number };
}

export interface BoundListener {
  readonly config: ListenerConfig;
  readonly port: number;
  readonly address: string;
}

export class Pop3Server {
  private readonly sessions = new Set<SessionHandle>();
  private readonly servers: { server: NetServer; config: ListenerConfig }[] = [];
  private readonly coordinator: Coordinator;
  private secureContext: SecureContext | undefined;
  private pending = 0; // connections accepted but not yet sessions (TLS handshake)
  private closing = false;
  /** Sessions allowed: limits.max_connections, or fewer when file descriptors are short (descriptors.ts). */
  private sessionLimit: number;
  readonly listeners: BoundListener[] = [];

  private readonly trusted = new BlockList();
  private readonly scramFakeSaltKey: Buffer;

  constructor(private readonly options: ServerOptions) {
    const shared = process.env.POSTERN_SCRAM_FAKE_KEY;
    this.scramFakeSaltKey =
      options.scramFakeSaltKey ??
      (shared && /^[0-9a-f]{64}$/.test(shared) ? Buffer.from(shared, 'hex') : randomBytes(32));
    for (const cidr of options.proxy?.trusted ?? []) {
      const c = parseCidr(cidr);
      if (!c) throw new Error(`bad CIDR in proxy.trusted: ${cidr}`);
      this.trusted.addSubnet(c.address, c.prefix, c.family);
    }
    this.coordinator =
      options.coordinator ??
      new LocalCoordinator({ baseMs: options.limits.failedLoginDelayMs, maxMs: options.limits.failedLoginMaxDelayMs });
    if (options.tls) this.setTls(options.tls);
    this.sessionLimit = options.limits.maxConnections;
  }

  /** Replaces the certificate for new connections (e.g. on SIGHUP); open sessions keep theirs. */
  setTls(tls: TlsMaterial): void {
    const min = tls.minVersion ?? 'TLSv1.2';
    this.secureContext = secureContextOf(tls.cert, tls.key, min, tls.clientCa);
    this.clientCerts = tls.clientCa
      ? { user: tls.clientCertUser ?? 'CN', ca: new X509Certificate(tls.clientCa) }
      : undefined;
    const byName = new Map<string, SecureContext>();
    for (const c of tls.sni ?? []) {
      const ctx = secureContextOf(c.cert, c.key, min, tls.clientCa);
      for (const n of c.names) byName.set(n.toLowerCase(), ctx);
    }
    this.sniContexts = byName;
    this.contexts.clear(); // new sessions get the new certificate; open ones keep theirs
  }

  private sniContexts = new Map<string, SecureContext>();
  /** Set when client certificates are asked for (SASL EXTERNAL). */
  private clientCerts: { user: 'CN' | 'emailAddress'; ca: X509Certificate } | undefined;

  /** SNI: an exact name first, then a one-label wildcard; otherwise the default certificate. */
  readonly sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const name = servername.toLowerCase();
    const dot = name.indexOf('.');
    const ctx = this.sniContexts.get(name) ?? (dot > 0 ? this.sniContexts.get(`*${name.slice(dot)}`) : undefined);
    cb(null, ctx ?? this.secureContext);
  };

  get sessionCount(): number {
    return this.sessions.size;
  }

  async listen(configs: readonly ListenerConfig[]): Promise<BoundListener[]> {
    const budget = sessionBudget(this.options.limits.maxConnections, this.options.otherDescriptors ?? 0);
    this.sessionLimit = budget.sessions;
    if (budget.limited) {
      this.options.logger.warn(
        { maxConnections: this.options.limits.maxConnections, sessions: budget.sessions },
        'the file descriptor limit allows fewer POP3 sessions than limits.max_connections (raise LimitNOFILE / ulimit -n)',
      );
    }
    for (const config of configs) {
      if (config.tls !== 'none' && !this.secureContext) {
        throw new Error(`listener ${config.address}:${config.port} needs TLS but no certificate is configured`);
      }
      const server = createNetServer({ noDelay: true }, (socket) => this.accept(socket, config));
      // Hard stop; up to it, connections beyond the session limit are answered -ERR [SYS/TEMP] (the descriptor
      // reserve has room for them).
      server.maxConnections = this.sessionLimit + DESCRIPTOR_RESERVE / 4;
      server.listen(config.port, config.address);
      await once(server, 'listening');
      const addr = server.address();
      const bound = {
        config,
        port: typeof addr === 'object' && addr ? addr.port : config.port,
        address: config.address,
      };
      this.servers.push({ server, config });
      this.listeners.push(bound);
      this.options.logger.info({ address: bound.address, port: bound.port, tls: config.tls }, 'listening');
    }
    return this.listeners;
  }

  /** The context of each listener's sessions, made once (and again after setTls): not an object spread per connection. */
  private readonly contexts = new Map<ListenerConfig, ServerContext>();

  private context(config: ListenerConfig): ServerContext {
    let ctx = this.contexts.get(config);
    if (ctx === undefined) {
      ctx = this.makeContext(config);
      this.contexts.set(config, ctx);
    }
    return ctx;
  }

  private makeContext(config: ListenerConfig): ServerContext {
    const o = this.options;
    const { tls: _tls, hooks, proxy: _proxy, coordinator: _coordinator, ...settings } = o;
    return {
      ...settings,
      ...hooks,
      secureContext: this.secureContext,
      sniCallback: this.sniCallback,
      clientCertUser: this.clientCerts?.user,
      clientCa: this.clientCerts?.ca,
      stlsEnabled: config.tls === 'starttls',
      policy: o.policy ?? { loginDelaySeconds: 0, expireDays: 'never' },
      saslMechanisms: o.saslMechanisms ?? SERVER_SASL_MECHANISMS,
      bearer: o.bearer,
      apop: o.apop ?? true,
      scramFakeSaltKey: this.scramFakeSaltKey,
      scramIterations: o.scramIterations ?? SCRAM_DEFAULT_ITERATIONS,
      coordinator: this.coordinator,
      onClose: (s) => this.forget(s),
    };
  }

  private accept(socket: Socket, config: ListenerConfig): void {
    socket.on('error', () => {}); // errors before a session exists are answered by the close that follows
    if (config.proxyProtocol) {
      this.acceptProxied(socket, config);
      return;
    }
    void this.admit(socket, config, normalizeAddress(socket.remoteAddress), false);
  }

  /**
   * A listener behind a proxy: the peer must be trusted and must send a PROXY v1/v2 header within the
   * timeout; the address in it is then the client's address for limits, penalties and logs.
   */
  private acceptProxied(socket: Socket, config: ListenerConfig): void {
    const peer = normalizeAddress(socket.remoteAddress);
    const log = this.options.logger;
    if (!this.trusted.check(peer, isIP(peer) === 6 ? 'ipv6' : 'ipv4')) {
      log.warn({ peer }, 'PROXY header from an untrusted peer refused');
      socket.destroy();
      return;
    }
    let buf: Buffer = Buffer.alloc(0);
    const timer = setTimeout(() => {
      log.warn({ peer }, 'PROXY header timeout');
      cleanup();
      socket.destroy();
    }, this.options.proxy?.timeoutMs ?? 5_000);
    timer.unref();
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const r = parseProxyHeader(buf.subarray(0, V2_MAX + 16));
      if (r.kind === 'incomplete' && buf.length <= V2_MAX + 16) return;
      cleanup();
      if (r.kind !== 'ok') {
        log.warn({ peer, reason: r.kind === 'invalid' ? r.reason : 'too long' }, 'bad PROXY header');
        socket.destroy();
        return;
      }
      const rest = buf.subarray(r.consumed);
      const address = r.source ? normalizeAddress(r.source.address) : peer;
      void this.admit(socket, config, address, r.ssl, rest);
    };
    socket.on('data', onData);
  }

  /** Applies the connection limits, then starts a session (after the TLS handshake on implicit-TLS ports). */
  private async admit(
    socket: Socket,
    config: ListenerConfig,
    address: string,
    proxiedTls: boolean,
    rest?: Buffer,
  ): Promise<void> {
    const limits = this.options.limits;
    const refuse = (why: string) => {
      this.options.logger.warn(
        { remote: address, total: this.sessions.size + this.pending },
        `connection refused: ${why}`,
      );
      if (config.tls === 'implicit' && !proxiedTls) socket.destroy();
      else socket.end(`${new Pop3Error(`${why}, try again later.`, RespCode.SysTemp).toLine()}\r\n`);
    };
    if (this.closing) return refuse('server shutting down');
    if (this.sessions.size + this.pending >= this.sessionLimit) return refuse('too many connections');
    this.pending++;
    const ok = await this.coordinator.acquire(address, limits.maxConnectionsPerAddress);
    this.pending--;
    if (!ok) return refuse('too many connections from your address');
    if (socket.destroyed || this.closing) {
      this.coordinator.release(address);
      if (!socket.destroyed) refuse('server shutting down');
      return;
    }
    if (config.tls !== 'implicit' || proxiedTls) {
      if (rest && rest.length > 0) socket.unshift(rest);
      this.startSession(socket, address, proxiedTls, config);
      return;
    }
    this.pending++;
    // Bytes read past a PROXY header are the start of the TLS handshake: hand them to TLS first.
    const transport = rest && rest.length > 0 ? withPrefix(socket, rest) : socket;
    const tls = new TLSSocket(transport as Socket, {
      isServer: true,
      secureContext: this.secureContext,
      SNICallback: this.sniCallback,
      // Asked for, never required: a client without a certificate logs in some other way.
      requestCert: this.clientCerts !== undefined,
      rejectUnauthorized: false,
    });
    // limits.tls_handshake_timeout, the same limit as after STLS (connection.ts).
    const timer = setTimeout(() => {
      this.options.logger.info({ remote: address }, 'TLS handshake timeout');
      tls.destroy();
    }, limits.tlsHandshakeTimeoutMs);
    timer.unref();
    let settled = false;
    const fail = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.pending--;
      this.coordinator.release(address);
      this.options.logger.debug({ remote: address, err: err?.message }, 'TLS handshake failed');
      tls.destroy();
    };
    tls.once('error', fail);
    tls.once('close', () => fail());
    tls.once('secure', () => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      this.pending--;
      tls.removeAllListeners('error');
      tls.removeAllListeners('close');
      this.startSession(tls, address, true, config);
    });
  }

  private startSession(socket: Socket, address: string, secure: boolean, config: ListenerConfig): void {
    socket.setKeepAlive(true, 60_000);
    const session = new Session(this.context(config), socket, address, secure);
    this.sessions.add(session);
    session.start();
  }

  private forget(session: SessionHandle): void {
    if (this.sessions.delete(session)) this.coordinator.release(session.remoteAddress);
    if (this.closing && this.sessions.size === 0) this.idle?.();
  }

  private idle: (() => void) | undefined;

  /**
   * Graceful stop: stop accepting, give sessions `graceMs` to finish (a session that reaches QUIT commits as
   * usual), then close the rest with -ERR [SYS/TEMP]. Nothing is deleted for a session that did not QUIT.
   */
  async close(graceMs = this.options.limits.shutdownGraceMs): Promise<void> {
    this.closing = true;
    const closed = Promise.all(this.servers.map(({ server }) => new Promise<void>((r) => server.close(() => r()))));
    if (this.sessions.size > 0) {
      const allGone = new Promise<void>((r) => {
        this.idle = r;
      });
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((r) => {
        timer = setTimeout(r, graceMs);
      });
      await Promise.race([allGone, timeout]);
      clearTimeout(timer);
      for (const s of [...this.sessions]) s.shutdown();
      // Sessions release their locks asynchronously; wait for them, but not forever.
      await Promise.race([allGone, new Promise((r) => setTimeout(r, 5_000).unref())]);
    }
    await closed;
  }
}
