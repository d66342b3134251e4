/**
 * One POP3 session: the RFC 1939 state machine (AUTHORIZATION → TRANSACTION → UPDATE) over one connection.
 * The bytes (socket, line reader, output queue, idle timer, STLS swap) are ./connection.ts; each verb's
 * behaviour is its file in ./commands/, which see this class only through CommandSession (commands/types.ts).
 * The table there says in which states each verb is valid, and the state is checked only here.
 */
import type { Socket } from 'node:net';
import type { Logger } from 'pino';
import type { Principal } from '../auth/passwd.ts';
import { randomHex } from '../mail/random.ts';
import { parseCommand, parseMsn } from '../protocol/command.ts';
import { Pop3Error, RespCode } from '../protocol/errors.ts';
import type { LineResult } from '../protocol/lineReader.ts';
import { isStorageError, type Maildrop, type MaildropState, type MessageInfo } from '../storage/types.ts';
import { isLoopback } from './address.ts';
import { commands } from './commands/index.ts';
import type { CommandSession, SessionState } from './commands/types.ts';
import { Connection, type TlsUpgrade } from './connection.ts';
import type { ServerContext, SessionHandle } from './context.ts';
import { errorReply } from './errors.ts';
import { type Catalogue, catalogues, DEFAULT_LANG } from './messages.ts';
import { type UserPolicy, userPolicy } from './policy.ts';
import { saslOffered } from './saslOffer.ts';
import { certificateUser } from './tls-identity.ts';

export type { SessionState } from './commands/types.ts';

let sessionCounter = 0;
/** `process.pid` is a getpid(2) at every read: once per process is enough. */
const PID = process.pid;
const PID36 = PID.toString(36);

export class Session implements CommandSession, SessionHandle {
  state: SessionState = 'AUTHORIZATION';
  readonly id: string;
  readonly log: Logger;
  readonly startedAt = Date.now();
  pendingUser: string | undefined;
  principal: Principal | undefined;
  maildrop: Maildrop | undefined;
  maildropState: MaildropState | undefined;
  readonly deleted = new Set<number>();
  readonly apopTimestamp: string | undefined;
  authFailures = 0;
  readonly retrieved = new Set<number>();
  lang = DEFAULT_LANG;
  utf8 = false;
  readonly counters = { retrieved: 0, deleted: 0, commands: 0 };

  private readonly conn: Connection;
  private badCommands = 0;

  constructor(
    readonly ctx: ServerContext,
    socket: Socket,
    readonly remoteAddress: string,
    secure: boolean,
  ) {
    this.id = `${PID36}${(++sessionCounter).toString(36)}`;
    this.log = ctx.logger.child({ session: this.id, remote: remoteAddress });
    // Sized for SASL continuation lines; command lines are held to the shorter limit in line().
    const maxLine = Math.max(ctx.limits.maxLineLength, ctx.limits.maxAuthLineLength);
    this.conn = new Connection(socket, secure, maxLine, this.log, {
      line: (r) => this.line(r),
      idleTimeoutMs: () =>
        this.state === 'TRANSACTION' ? this.ctx.limits.idleTimeoutMs : this.ctx.limits.idleTimeoutAuthMs,
      idle: () => this.idle(),
      closed: (reason) => this.teardown(reason),
    });
    if (ctx.apop && ctx.authenticator.hasSharedSecrets()) {
      this.apopTimestamp = `<${randomHex(9)}.${PID}@${ctx.hostname}>`;
    }
  }

  get text(): Catalogue {
    return catalogues[this.lang];
  }

  get secure(): boolean {
    return this.conn.secure;
  }

  get isClosed(): boolean {
    return this.conn.isClosed;
  }

  get isBusy(): boolean {
    return this.conn.isBusy;
  }

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
    return saslOffered(this.ctx.saslMechanisms, {
      plaintextAllowed: this.plaintextAllowed,
      sharedSecrets: a.hasSharedSecrets(),
      scram: a.scramCredentials !== undefined,
      bearer: this.ctx.bearer !== undefined,
      clientCertificate: this.certificateUser() !== undefined,
    });
  }

  certificateUser(): string | undefined {
    return certificateUser(this.conn.transport, this.ctx.clientCertUser, this.ctx.clientCa);
  }

  get stlsAvailable(): boolean {
    return !this.secure && this.ctx.secureContext !== undefined && this.ctx.stlsEnabled;
  }

  policyFor(principal: Principal | undefined): UserPolicy {
    return userPolicy(this.ctx.policy, principal?.settings);
  }

  start(): void {
    this.conn.start();
    const greeting = this.ctx.greeting + (this.apopTimestamp ? ` ${this.apopTimestamp}` : '');
    this.reply(`+OK ${greeting}`);
    this.flush();
    this.conn.armIdle();
    this.log.debug({ secure: this.secure }, 'connect');
    this.ctx.onSessionStart?.();
  }

  // ----- commands ------------------------------------------------------------------------------------------

  private async line(r: LineResult): Promise<void> {
    if (r.kind === 'toolong' || r.line.length > this.ctx.limits.maxLineLength) {
      this.bad(new Pop3Error(this.text.lineTooLong(this.ctx.limits.maxLineLength)));
      return;
    }
    await this.execute(r.line);
  }

  private async execute(line: Buffer): Promise<void> {
    const parsed = parseCommand(line);
    if ('error' in parsed) {
      this.bad(new Pop3Error(parsed.error));
      return;
    }
    const spec = Object.hasOwn(commands, parsed.verb) ? commands[parsed.verb] : undefined;
    if (!spec) {
      this.ctx.onCommand?.(parsed.verb, 'unknown');
      this.bad(new Pop3Error(this.text.unknownCommand));
      return;
    }
    if (!spec.states.includes(this.state)) {
      this.bad(new Pop3Error(this.text.wrongState(parsed.verb, this.state)));
      return;
    }
    this.counters.commands++;
    // Never log the arguments of commands that carry secrets.
    this.log.trace({ verb: parsed.verb }, 'command');
    try {
      const r = spec.run(this, parsed);
      // Replies stay queued while a command awaits: a pipelined batch is answered in one write when the batch
      // ends or the queue grows large. Commands that wait on the client flush first themselves (STLS, SASL
      // continuations, streamed messages).
      if (r instanceof Promise) await r;
      this.badCommands = 0;
      this.ctx.onCommand?.(parsed.verb, 'ok');
    } catch (err) {
      this.ctx.onCommand?.(parsed.verb, 'error');
      this.replyError(this.failure(err));
    }
  }

  /** The reply to a failed command, logged by its class; the session state is unchanged. */
  private failure(err: unknown): Pop3Error {
    if (isStorageError(err)) this.log.warn({ err: err.message, kind: err.kind }, 'storage error');
    else if (!(err instanceof Pop3Error)) this.log.error({ err }, 'unexpected error');
    return errorReply(err, this.text);
  }

  private bad(err: Pop3Error): void {
    this.replyError(err);
    this.badCommands++;
    if (this.badCommands >= this.ctx.limits.maxBadCommands) {
      this.log.info({ badCommands: this.badCommands }, 'too many bad commands');
      this.replyError(new Pop3Error(this.text.tooManyBad));
      this.close('bad commands');
    }
  }

  // ----- output (the connection's) -------------------------------------------------------------------------

  reply(line: string): void {
    this.conn.reply(line);
  }

  replyError(err: Pop3Error): void {
    this.conn.reply(err.toLine());
  }

  queue(buf: Buffer): void {
    this.conn.queue(buf);
  }

  flush(): void {
    this.conn.flush();
  }

  write(buf: Buffer, sent?: () => void): Promise<void> {
    return this.conn.write(buf, sent);
  }

  sendLines(first: string, lines: Iterable<string>): Promise<void> {
    return this.conn.sendLines(first, lines);
  }

  readContinuation(): Promise<LineResult | null> {
    return this.conn.readContinuation();
  }

  startTls(upgrade: TlsUpgrade): void {
    this.conn.startTls(upgrade);
  }

  resetIdle(): void {
    this.conn.armIdle();
  }

  // ----- messages ------------------------------------------------------------------------------------------

  requireMaildrop(): Maildrop {
    if (!this.maildrop) throw new Pop3Error(this.text.noMaildrop);
    return this.maildrop;
  }

  message(arg: string | undefined): { msn: number; info: MessageInfo } {
    const md = this.requireMaildrop();
    if (arg === undefined) throw new Pop3Error(this.text.msnRequired);
    const msn = parseMsn(arg);
    if (msn === null) throw new Pop3Error(this.text.invalidMsn);
    if (msn > md.messages.length) throw new Pop3Error(this.text.noSuchMessage);
    if (this.deleted.has(msn - 1)) throw new Pop3Error(this.text.alreadyDeleted(msn));
    return { msn, info: md.messages[msn - 1] };
  }

  *live(): Generator<{ msn: number; info: MessageInfo }> {
    const msgs = this.maildrop?.messages ?? [];
    for (let i = 0; i < msgs.length; i++) if (!this.deleted.has(i)) yield { msn: i + 1, info: msgs[i] };
  }

  totals(): [number, number] {
    // Nothing deleted yet: the store's totals, without building 100 000 message objects for a STAT.
    const pre = this.deleted.size === 0 ? this.maildrop?.prebuilt : undefined;
    if (pre !== undefined) return [pre.count, pre.octets];
    let n = 0;
    let size = 0;
    for (const { info } of this.live()) {
      n++;
      size += info.size;
    }
    return [n, size];
  }

  // ----- the ways out --------------------------------------------------------------------------------------

  close(reason: string): void {
    this.conn.close(reason);
  }

  destroy(reason: string): void {
    this.conn.destroy(reason);
  }

  /** Server shutdown: sessions still open after the grace period are told and closed; nothing is deleted. */
  shutdown(): void {
    if (this.isClosed) return;
    if (!this.isBusy) this.replyError(new Pop3Error(this.text.shuttingDown, RespCode.SysTemp));
    this.close('shutdown');
  }

  private idle(): void {
    this.log.info({ state: this.state }, 'idle timeout');
    // RFC 1939 §3: an autologout timer closes without entering UPDATE, so nothing is deleted.
    if (!this.isBusy) this.replyError(new Pop3Error(this.text.idle));
    this.close('idle timeout');
  }

  private async teardown(reason: string): Promise<void> {
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
      bytes: this.conn.bytesSent,
      durationMs: Date.now() - this.startedAt,
    };
    this.log.info({ user: this.principal?.user, reason, ...summary, commands: this.counters.commands }, 'disconnect');
    this.ctx.onSessionEnd?.(summary);
    this.ctx.onClose(this);
  }
}
