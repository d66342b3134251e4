/**
 * One POP3 connection: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE), its timers and
 * limits, and the output path. Commands live in ./commands/, one file per verb; the table there says in which
 * states each verb is valid, and the state is checked only here.
 *
 * Numberings used across layers (as Dovecot's pop3 does):
 *   - msn: the 1-based message number a client sees, fixed for the session (RFC 1939 §4);
 *   - index: msn − 1, the position in `maildrop.messages` and in `deleted`;
 *   - id: the store's own key of a message (never shown to clients; the uidl is).
 */
import { randomBytes } from 'node:crypto';
import type { Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import type { Principal } from '../auth/passwd.ts';
import { parseCommand, parseMsn } from '../protocol/command.ts';
import { DotEncoder, type DotEncoder as DotEncoderType } from '../protocol/dot.ts';
import { Pop3Error, RespCode } from '../protocol/errors.ts';
import { LineReader, type LineResult } from '../protocol/lineReader.ts';
import type { Maildrop, MaildropState, MessageInfo } from '../storage/types.ts';
import { isStorageError } from '../storage/types.ts';
import { isLoopback } from './address.ts';
import { commands } from './commands/index.ts';
import type { ServerContext } from './context.ts';
import { type Catalogue, catalogues, DEFAULT_LANG } from './messages.ts';
import { applyExpire, type UserPolicy, userPolicy } from './policy.ts';

export type SessionState = 'AUTHORIZATION' | 'TRANSACTION' | 'UPDATE';

/** Input buffered beyond this (a client pipelining far ahead) pauses reading until it is consumed. */
const INPUT_HIGH_WATER = 64 * 1024;
/** Multi-line listings (LIST, UIDL) are written in pieces of about this size, with backpressure. */
const LISTING_CHUNK = 64 * 1024;
/** Replies of a pipelined batch are gathered up to about this size before one write. */
const OUTPUT_BATCH = 256 * 1024;
/** Messages up to this transmitted size are read in one call and answered in one write with their +OK. */
const SMALL_MESSAGE = 128 * 1024;
/** Time allowed for the TLS handshake after STLS (RFC 2595). */
const STLS_HANDSHAKE_TIMEOUT_MS = 30_000;

let sessionCounter = 0;

export class Session {
  state: SessionState = 'AUTHORIZATION';
  readonly id: string;
  readonly log: Logger;
  readonly startedAt = Date.now();
  /** USER given and waiting for PASS (RFC 1939 §7). */
  pendingUser: string | undefined;
  principal: Principal | undefined;
  maildrop: Maildrop | undefined;
  /** Indexes (msn − 1) marked by DELE; applied only in UPDATE (RFC 1939 §6). */
  readonly deleted = new Set<number>();
  /** The APOP timestamp of the greeting, when APOP is offered (RFC 1939 §7). */
  readonly apopTimestamp: string | undefined;
  authFailures = 0;
  /** Snapshot messages retrieved (RETR) in this session, by index; EXPIRE counts from the first retrieval. */
  readonly retrieved = new Set<number>();
  /** The mailbox's bookkeeping as read at login, when a policy needs it. */
  private maildropState: MaildropState | undefined;
  /** RFC 6856 LANG: the language of reply texts. */
  lang = DEFAULT_LANG;
  /** RFC 6856 UTF8: the client said it accepts UTF-8. */
  utf8 = false;
  readonly counters = { retrieved: 0, deleted: 0, bytesSent: 0, commands: 0 };

  private socket: Socket;
  private reader: LineReader;
  /** Replies not yet written: lines with their CRLF, and whole small messages (see sendMessage). */
  private out: (string | Buffer)[] = [];
  private outBytes = 0;
  private busy = false;
  private paused = false;
  private closed = false;
  private badCommands = 0;
  private idleTimer: NodeJS.Timeout | undefined;
  private closeReason = 'client';
  private readonly onDataBound = (chunk: Buffer) => this.onData(chunk);

  constructor(
    readonly ctx: ServerContext,
    socket: Socket,
    readonly remoteAddress: string,
    public secure: boolean,
  ) {
    this.socket = socket;
    this.id = `${process.pid.toString(36)}${(++sessionCounter).toString(36)}`;
    this.log = ctx.logger.child({ session: this.id, remote: remoteAddress });
    // Sized for SASL continuation lines; command lines are held to the shorter limit in pump().
    this.reader = new LineReader({ maxLine: Math.max(ctx.limits.maxLineLength, ctx.limits.maxAuthLineLength) });
    if (ctx.apop && ctx.authenticator.hasSharedSecrets()) {
      this.apopTimestamp = `<${randomBytes(9).toString('hex')}.${process.pid}@${ctx.hostname}>`;
    }
  }

  /** Reply texts in the session's language. */
  get text(): Catalogue {
    return catalogues[this.lang];
  }

  get isClosed(): boolean {
    return this.closed;
  }

  get isBusy(): boolean {
    return this.busy;
  }

  /** Plaintext passwords (USER/PASS) are allowed on TLS, on loopback, or when the operator says so. */
  get plaintextAllowed(): boolean {
    return this.secure || this.ctx.allowPlaintextAuth || (this.ctx.loopbackIsSecure && isLoopback(this.remoteAddress));
  }

  /**
   * SASL mechanisms offered on this connection now: the enabled ones that can work here. Those that send a
   * password or token as is (PLAIN, LOGIN, the OAuth ones) follow the plaintext rule; CRAM-MD5 needs stored
   * shared secrets, SCRAM a user store with SCRAM keys, the OAuth ones a token check.
   */
  saslOffered(): string[] {
    const a = this.ctx.authenticator;
    return this.ctx.saslMechanisms.filter((m) => {
      switch (m) {
        case 'PLAIN':
        case 'LOGIN':
          return this.plaintextAllowed;
        case 'CRAM-MD5':
          return a.hasSharedSecrets();
        case 'SCRAM-SHA-256':
          return a.scramCredentials !== undefined;
        case 'OAUTHBEARER':
        case 'XOAUTH2':
          return this.ctx.bearer !== undefined && this.plaintextAllowed;
        case 'EXTERNAL':
          return this.certificateUser() !== undefined;
        default:
          return false;
      }
    });
  }

  /**
   * The user named by a client certificate that the configured CA verified, for SASL EXTERNAL (RFC 4422
   * App. A); undefined without one.
   */
  certificateUser(): string | undefined {
    const field = this.ctx.clientCertUser;
    const sock = this.socket;
    const ca = this.ctx.clientCa;
    if (field === undefined || ca === undefined || !(sock instanceof TLSSocket)) return undefined;
    const peer = sock.getPeerX509Certificate();
    // A TLSSocket made by hand (as ours are, for PROXY and STLS) does not run Node's own verification of the
    // client certificate, so check it here: issued and signed by the configured CA, and valid now. The TLS
    // handshake itself proved that the client holds the certificate's key.
    if (!peer?.checkIssued(ca) || !peer.verify(ca.publicKey)) return undefined;
    const now = Date.now();
    if (now < Date.parse(peer.validFrom) || now > Date.parse(peer.validTo)) return undefined;
    const value = sock.getPeerCertificate().subject?.[field];
    return typeof value === 'string' && value.length > 0 ? value : undefined;
  }

  get stlsAvailable(): boolean {
    return !this.secure && this.ctx.secureContext !== undefined && this.ctx.stlsEnabled;
  }

  start(): void {
    this.attach(this.socket);
    const greeting = this.ctx.greeting + (this.apopTimestamp ? ` ${this.apopTimestamp}` : '');
    this.reply(`+OK ${greeting}`);
    this.flush();
    this.armIdle();
    this.log.info({ secure: this.secure }, 'connect');
    this.ctx.onSessionStart?.();
  }

  private attach(socket: Socket): void {
    socket.on('data', this.onDataBound);
    socket.resume(); // a socket handed over after reading a PROXY header was paused explicitly
    socket.on('drain', () => this.armIdle());
    socket.on('error', (err) => {
      this.log.debug({ err: err.message }, 'socket error');
      this.closeReason = 'error';
    });
    socket.on('close', () => void this.teardown());
  }

  // ----- input ---------------------------------------------------------------------------------------------

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    this.reader.push(chunk);
    if (this.continuation) {
      const r = this.reader.next();
      if (r) {
        const resolve = this.continuation;
        this.continuation = undefined;
        this.armIdle();
        resolve(r);
      }
      return;
    }
    if (!this.paused && this.reader.buffered > INPUT_HIGH_WATER) {
      this.paused = true;
      this.socket.pause();
    }
    if (!this.busy) void this.pump();
  }

  private continuation: ((line: LineResult | null) => void) | undefined;

  /**
   * The next line from the client inside a command (SASL continuations, RFC 5034 §4), or null once the
   * connection is gone. Pending replies (the challenge) are flushed first.
   */
  readContinuation(): Promise<LineResult | null> {
    const r = this.reader.next();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(null);
    this.flush();
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    return new Promise((resolve) => {
      this.continuation = resolve;
    });
  }

  private async pump(): Promise<void> {
    this.busy = true;
    try {
      while (!this.closed) {
        const r = this.reader.next();
        if (r === null) break;
        this.armIdle();
        if (r.kind === 'toolong' || r.line.length > this.ctx.limits.maxLineLength) {
          this.bad(`-ERR ${this.text.lineTooLong(this.ctx.limits.maxLineLength)}`);
          continue;
        }
        await this.execute(r.line);
        if (this.socket.writableNeedDrain) {
          this.flush();
          await this.drain();
        }
        if (this.paused && this.reader.buffered < INPUT_HIGH_WATER / 2) {
          this.paused = false;
          this.socket.resume();
        }
      }
    } catch (err) {
      this.log.error({ err }, 'session failure');
      this.closeReason = 'internal error';
      this.destroy();
    } finally {
      this.busy = false;
      this.flush();
    }
  }

  private async execute(line: Buffer): Promise<void> {
    const parsed = parseCommand(line);
    if ('error' in parsed) {
      this.bad(`-ERR ${parsed.error}`);
      return;
    }
    const spec = Object.hasOwn(commands, parsed.verb) ? commands[parsed.verb] : undefined;
    if (!spec) {
      this.ctx.onCommand?.(parsed.verb, 'unknown');
      this.bad(`-ERR ${this.text.unknownCommand}`);
      return;
    }
    if (!spec.states.includes(this.state)) {
      this.bad(`-ERR ${this.text.wrongState(parsed.verb, this.state)}`);
      return;
    }
    this.counters.commands++;
    // Never log the arguments of commands that carry secrets.
    this.log.trace({ verb: parsed.verb }, 'command');
    try {
      const r = spec.run(this, parsed);
      // Replies stay queued while a command awaits: a pipelined batch is answered in one write when the batch
      // ends (pump) or the queue grows large. Commands that wait on the client flush first themselves
      // (STLS, SASL continuations, streamed messages).
      if (r instanceof Promise) await r;
      this.badCommands = 0;
      this.ctx.onCommand?.(parsed.verb, 'ok');
    } catch (err) {
      this.ctx.onCommand?.(parsed.verb, 'error');
      this.reply(this.errorLine(err));
    }
  }

  /** Maps any failure to its reply; anything unexpected is logged and answered with [SYS/TEMP]. */
  errorLine(err: unknown): string {
    if (err instanceof Pop3Error) return err.toLine();
    if (isStorageError(err)) {
      this.log.warn({ err: err.message, kind: err.kind }, 'storage error');
      switch (err.kind) {
        case 'inuse':
          return `-ERR [${RespCode.InUse}] ${this.text.inUse}`;
        case 'notfound':
          return `-ERR ${this.text.messageGone}`;
        case 'perm':
          return `-ERR [${RespCode.SysPerm}] ${this.text.storagePerm}`;
        default:
          return `-ERR [${RespCode.SysTemp}] ${this.text.storageTemp}`;
      }
    }
    this.log.error({ err }, 'unexpected error');
    return `-ERR [${RespCode.SysTemp}] ${this.text.internalError}`;
  }

  private bad(line: string): void {
    this.reply(line);
    this.badCommands++;
    if (this.badCommands >= this.ctx.limits.maxBadCommands) {
      this.log.info({ badCommands: this.badCommands }, 'too many bad commands');
      this.reply(`-ERR ${this.text.tooManyBad}`);
      this.close('bad commands');
    }
  }

  // ----- output --------------------------------------------------------------------------------------------

  /** Queues one reply line (without CRLF); queued lines go out together, which answers pipelines in one write. */
  reply(line: string): void {
    if (this.closed) return;
    this.out.push(`${line}\r\n`);
    this.outBytes += line.length + 2;
  }

  /** Queues wire bytes behind the pending replies; a large queue is written at once. */
  private queue(buf: Buffer): void {
    if (this.closed || buf.length === 0) return;
    this.out.push(buf);
    this.outBytes += buf.length;
    if (this.outBytes >= OUTPUT_BATCH) this.flush();
  }

  flush(): void {
    if (this.out.length === 0 || this.closed) return;
    const parts = this.out;
    this.out = [];
    this.outBytes = 0;
    const data =
      parts.length === 1
        ? parts[0]
        : parts.every((p) => typeof p === 'string')
          ? parts.join('')
          : Buffer.concat(parts.map((p) => (typeof p === 'string' ? Buffer.from(p) : p)));
    this.counters.bytesSent += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
    this.socket.write(data);
  }

  /** Resolves when the socket has room again (or is closed). */
  private drain(): Promise<void> {
    if (this.closed || !this.socket.writableNeedDrain) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.socket.off('drain', done);
        this.socket.off('close', done);
        resolve();
      };
      this.socket.on('drain', done);
      this.socket.on('close', done);
    });
  }

  private async writeBuffer(buf: Buffer): Promise<void> {
    if (this.closed || buf.length === 0) return;
    this.counters.bytesSent += buf.length;
    if (!this.socket.write(buf)) await this.drain();
  }

  /** A multi-line reply of short lines (LIST, UIDL, CAPA), written in pieces with backpressure. */
  async sendLines(first: string, lines: Iterable<string>): Promise<void> {
    this.reply(first);
    this.flush();
    let piece: string[] = [];
    let size = 0;
    for (const l of lines) {
      // RFC 1939 §3: a line of a multi-line reply that starts with "." is byte-stuffed.
      const s = l.startsWith('.') ? `.${l}` : l;
      piece.push(s);
      size += s.length + 2;
      if (size >= LISTING_CHUNK) {
        await this.writeBuffer(Buffer.from(`${piece.join('\r\n')}\r\n`));
        piece = [];
        size = 0;
      }
    }
    piece.push('.');
    await this.writeBuffer(Buffer.from(`${piece.join('\r\n')}\r\n`));
  }

  /**
   * Streams one message (RETR) or its top (TOP): the file is read in chunks and passed once through the dot
   * encoder (CRLF repair, dot-stuffing, TOP cut), and reading waits whenever the socket is full, so memory
   * stays bounded whatever the message size (design.md §6).
   */
  async sendMessage(info: MessageInfo, topLines?: number): Promise<void> {
    const md = this.requireMaildrop();
    const okLine = topLines === undefined ? `+OK ${info.size} octets` : `+OK ${this.text.topFollows}`;
    if (info.size <= SMALL_MESSAGE && md.readSmall) {
      // Most mail is small: one read, one encoding pass, and the reply joins the batch's single write.
      const whole = await md.readSmall(info.id, info.size);
      if (whole !== null) {
        const enc = new DotEncoder(topLines === undefined ? {} : { topLines });
        this.reply(okLine);
        this.queue(enc.write(whole));
        this.queue(enc.end());
        return;
      }
    }
    const stream = await md.open(info.id);
    this.reply(okLine);
    this.flush();
    const enc: DotEncoderType = new DotEncoder(topLines === undefined ? {} : { topLines });
    try {
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        if (this.closed) return;
        await this.writeBuffer(enc.write(chunk));
        if (enc.finished) break;
      }
      await this.writeBuffer(enc.end());
    } catch (err) {
      // The +OK is already out, so no -ERR can follow: the only honest answer is to close the connection.
      // Nothing is deleted, since the session never reaches UPDATE.
      this.log.error({ err, uidl: info.uidl }, 'message read failed mid-stream');
      this.closeReason = 'read failure';
      this.destroy();
    } finally {
      stream.destroy();
    }
  }

  // ----- messages ------------------------------------------------------------------------------------------

  requireMaildrop(): Maildrop {
    if (!this.maildrop) throw new Pop3Error(this.text.noMaildrop);
    return this.maildrop;
  }

  /** Resolves a message-number argument: `-ERR` for a bad number, one beyond the maildrop, or a deleted one. */
  message(arg: string | undefined): { msn: number; info: MessageInfo } {
    const md = this.requireMaildrop();
    if (arg === undefined) throw new Pop3Error(this.text.msnRequired);
    const msn = parseMsn(arg);
    if (msn === null) throw new Pop3Error(this.text.invalidMsn);
    if (msn > md.messages.length) throw new Pop3Error(this.text.noSuchMessage);
    if (this.deleted.has(msn - 1)) throw new Pop3Error(this.text.alreadyDeleted(msn));
    return { msn, info: md.messages[msn - 1] };
  }

  /** Messages not marked deleted, with their msn. */
  *live(): Generator<{ msn: number; info: MessageInfo }> {
    const msgs = this.maildrop?.messages ?? [];
    for (let i = 0; i < msgs.length; i++) if (!this.deleted.has(i)) yield { msn: i + 1, info: msgs[i] };
  }

  /** `[count, octets]` of the maildrop without deleted messages. */
  totals(): [number, number] {
    let n = 0;
    let size = 0;
    for (const { info } of this.live()) {
      n++;
      size += info.size;
    }
    return [n, size];
  }

  /** The LOGIN-DELAY (seconds) and EXPIRE (days or "never") that apply to a user. */
  policyFor(principal: Principal | undefined): UserPolicy {
    return userPolicy(this.ctx.policy, principal?.settings, (field) =>
      this.log.warn({ user: principal?.user, field }, 'ignoring a malformed policy field'),
    );
  }

  /** Called once the principal is verified: takes the maildrop lock, then enters TRANSACTION. */
  async enterTransaction(principal: Principal, mechanism: string): Promise<void> {
    let md: Maildrop;
    try {
      md = await this.ctx.store.openMaildrop(principal.mailboxId);
    } catch (err) {
      this.log.info({ user: principal.user, kind: isStorageError(err) ? err.kind : 'error' }, 'maildrop open failed');
      throw err;
    }
    if (this.closed) {
      await md.release();
      return;
    }
    const policy = this.policyFor(principal);
    if (policy.loginDelay > 0 || policy.expire !== 'never') {
      try {
        // Read and written under the maildrop lock, so concurrent logins on any process see one order.
        const state = await md.readState();
        const now = Date.now();
        const wait = policy.loginDelay * 1000 - (now - (state.lastLogin ?? 0));
        if (policy.loginDelay > 0 && wait > 0) {
          this.log.info({ user: principal.user, waitMs: wait }, 'login refused: LOGIN-DELAY');
          throw new Pop3Error(this.text.loginDelay(policy.loginDelay), RespCode.LoginDelay);
        }
        if (policy.loginDelay > 0) {
          this.maildropState = { ...state, lastLogin: now };
          await md.writeState(this.maildropState);
        } else {
          this.maildropState = state;
        }
      } catch (err) {
        await md.release();
        throw err;
      }
    }
    this.maildrop = md;
    this.principal = principal;
    this.state = 'TRANSACTION';
    this.pendingUser = undefined;
    this.ctx.coordinator.succeed(this.remoteAddress);
    this.armIdle();
    const [n, size] = this.totals();
    this.log.info({ user: principal.user, mechanism, messages: n, octets: size }, 'login');
    this.ctx.onLogin?.(mechanism, 'ok');
    this.reply(`+OK ${this.text.loggedIn(n, size)}`);
  }

  /** A failed login: the same delay, the same reply and the same log line whatever the reason. */
  async loginFailed(user: string | undefined, mechanism: string, reason: string): Promise<void> {
    this.authFailures++;
    this.pendingUser = undefined;
    const delay = await this.ctx.coordinator.fail(this.remoteAddress);
    // fail2ban: match `"msg":"authentication failed"` with `"remote":"<HOST>"`.
    this.log.warn({ user, mechanism, reason, delayMs: delay }, 'authentication failed');
    this.ctx.onLogin?.(mechanism, 'fail');
    if (delay > 0) await sleep(delay);
    if (this.closed) return;
    this.reply(`-ERR [${RespCode.Auth}] ${this.text.authFailed}`);
    if (this.authFailures >= this.ctx.limits.maxAuthFailures) {
      this.reply(`-ERR ${this.text.tooManyFailures}`);
      this.close('auth failures');
    }
  }

  // ----- UPDATE and the ways out ---------------------------------------------------------------------------

  /**
   * QUIT in TRANSACTION: enter UPDATE, commit the deletions durably, and only then say +OK (RFC 1939 §6).
   * A failed commit answers -ERR [SYS/TEMP] and deletes nothing more than the store managed to make durable.
   */
  async update(): Promise<void> {
    this.state = 'UPDATE';
    const md = this.requireMaildrop();
    const doomed = new Set(this.deleted);
    const expire = this.policyFor(this.principal).expire;
    let nextState: MaildropState | undefined;
    if (expire !== 'never') {
      // RFC 2449 EXPIRE: a message is kept `expire` days after it was first retrieved; 0 means it goes at the
      // QUIT of the session that retrieved it. Messages never retrieved are never expired.
      const { expired, retrieved } = applyExpire(
        md.messages,
        this.maildropState ?? {},
        expire,
        Date.now(),
        this.retrieved,
        this.deleted,
      );
      for (const i of expired) doomed.add(i);
      nextState = { ...this.maildropState, retrieved };
    }
    const ids = [...doomed].map((i) => md.messages[i].id);
    try {
      if (ids.length > 0) await md.commit(ids);
      if (nextState) {
        await md.writeState(nextState).catch((err: unknown) => {
          // Bookkeeping only: the deletions above are already durable, so QUIT still succeeds.
          this.log.warn({ err: (err as Error).message }, 'could not record retrieval times');
        });
      }
      this.counters.deleted = ids.length;
      const left = md.messages.length - ids.length;
      // Drop the lock before the +OK, so a client that reconnects at once never meets its own old session.
      this.maildrop = undefined;
      await md.release();
      this.reply(`+OK ${this.text.loggingOut(ids.length, left)}`);
    } catch (err) {
      this.log.error({ err: (err as Error).message, count: ids.length }, 'commit failed');
      this.reply(`-ERR [${RespCode.SysTemp}] ${this.text.commitFailed}`);
    }
    this.close('quit');
  }

  /** STLS (RFC 2595 §4): after +OK, discard any bytes already received and start the TLS handshake. */
  startTls(): void {
    const ctx = this.ctx.secureContext;
    if (!ctx) throw new Pop3Error(this.text.tlsUnavailable);
    this.reply(`+OK ${this.text.beginTls}`);
    this.flush();
    // Security: bytes that arrived after STLS in the clear could have been injected by an attacker and must
    // never be run as commands after the handshake (the STARTTLS command-injection class of bugs).
    this.reader.takeRest();
    const plain = this.socket;
    plain.off('data', this.onDataBound);
    plain.removeAllListeners('drain');
    plain.removeAllListeners('close');
    plain.removeAllListeners('error');
    const tls = new TLSSocket(plain, {
      isServer: true,
      secureContext: ctx,
      SNICallback: this.ctx.sniCallback,
      requestCert: this.ctx.clientCertUser !== undefined,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      this.log.info('STLS handshake timeout');
      tls.destroy();
    }, STLS_HANDSHAKE_TIMEOUT_MS);
    timer.unref();
    this.socket = tls;
    // A TLSSocket emits no data before its handshake completes, so no command can run in between.
    tls.once('secure', () => {
      clearTimeout(timer);
      this.secure = true;
      this.log.info({ protocol: tls.getProtocol() }, 'STLS established');
      this.armIdle();
    });
    this.attach(tls);
    tls.on('error', () => {
      clearTimeout(timer);
      tls.destroy();
    });
    plain.on('error', () => tls.destroy());
  }

  /** Ends the session after queued replies are written. Deletes nothing. */
  close(reason: string): void {
    if (this.closed) return;
    this.closeReason = reason;
    this.flush();
    this.closed = true;
    this.socket.end();
    // A client that never reads must not keep the socket (and the lock) forever.
    setTimeout(() => this.socket.destroy(), 5_000).unref();
    void this.teardown();
  }

  destroy(): void {
    this.closed = true;
    this.socket.destroy();
    void this.teardown();
  }

  /** Server shutdown: sessions still open after the grace period are told and closed; nothing is deleted. */
  shutdown(): void {
    if (this.closed) return;
    if (!this.busy) {
      this.reply(`-ERR [${RespCode.SysTemp}] ${this.text.shuttingDown}`);
    }
    this.close('shutdown');
  }

  private tornDown = false;
  private async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const waiting = this.continuation;
    this.continuation = undefined;
    waiting?.(null);
    const md = this.maildrop;
    this.maildrop = undefined;
    if (md) {
      try {
        await md.release();
      } catch (err) {
        this.log.error({ err }, 'lock release failed');
      }
    }
    const summary = {
      retrieved: this.counters.retrieved,
      deleted: this.counters.deleted,
      bytes: this.counters.bytesSent,
      durationMs: Date.now() - this.startedAt,
    };
    this.log.info(
      { user: this.principal?.user, reason: this.closeReason, ...summary, commands: this.counters.commands },
      'disconnect',
    );
    this.ctx.onSessionEnd?.(summary);
    this.ctx.onClose(this);
  }

  private armIdle(): void {
    if (this.closed) return;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const ms = this.state === 'TRANSACTION' ? this.ctx.limits.idleTimeoutMs : this.ctx.limits.idleTimeoutAuthMs;
    this.idleTimer = setTimeout(() => {
      this.log.info({ state: this.state }, 'idle timeout');
      // RFC 1939 §3: an autologout timer closes without entering UPDATE, so nothing is deleted.
      if (!this.busy) this.reply(`-ERR ${this.text.idle}`);
      this.close('idle timeout');
    }, ms);
    this.idleTimer.unref();
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
