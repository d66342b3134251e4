/**
 * Pop3Client: a POP3 client (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), implicit TLS (RFC 8314), SASL
 * (RFC 5034), response codes (RFC 2449 §8, RFC 3206) and UTF8 (RFC 6856).
 *
 *   const client = await Pop3Client.connect({ host, tls: 'implicit', auth: { user, password } });
 *   for await (const m of client.messages()) { const msg = await client.retrieve(m.number); … }
 *   await client.quit();
 *
 * Safety: nothing marked with delete() is removed unless quit() succeeds (RFC 1939 §6); destroy(), an abort,
 * a timeout or a broken connection close without QUIT, so the server deletes nothing.
 */
import type { AuthMechanism, AuthOptions } from './auth.ts';
import { Capabilities } from './capabilities.ts';
import { Connection, type RetrieveSink } from './connection.ts';
import {
  Pop3AbortError,
  Pop3ClientError,
  Pop3ClosedError,
  Pop3ErrorCode,
  Pop3ProtocolError,
  Pop3ResponseError,
} from './errors.ts';
import type { MessageStream } from './message.ts';
import { checkMsn, MAX_MSN, parseListLine, parseUidlLine } from './replies.ts';
import { login, openTransport, startTls } from './setup.ts';
import type { TlsInfo, TlsParams } from './transport.ts';
import type { ConnectOptions, ListEntry, MessageInfo, StatResult, UidlEntry } from './types.ts';

export type { ConnectOptions, ListEntry, MessageInfo, StatResult, TlsMode, UidlEntry } from './types.ts';

export type ClientState = 'AUTHORIZATION' | 'TRANSACTION' | 'CLOSED';

export const DEFAULT_TIMEOUT_MS = 60_000;
/** Pipelining window: enough to hide round trips, small enough that a failure does not leave much in the air. */
export const DEFAULT_PIPELINE_WINDOW = 16;

export class Pop3Client {
  /** The server's greeting text after "+OK ". */
  readonly greeting: string;
  /** RFC 1939 §7 APOP timestamp from the greeting, if it had one. */
  readonly apopTimestamp: string | undefined;
  private caps: Capabilities = new Capabilities();
  private conn: Connection;
  private _state: ClientState = 'AUTHORIZATION';
  private _tls: TlsInfo | undefined;
  private _mechanism: AuthMechanism | undefined;
  private _window = 1;
  private quitDone = false;
  private readonly options: ConnectOptions;
  private readonly tlsParams: TlsParams;
  private readonly timeoutMs: number;
  private readonly removeAbort: () => void;

  private constructor(
    conn: Connection,
    greeting: string,
    options: ConnectOptions,
    tlsParams: TlsParams,
    tls: TlsInfo | undefined,
  ) {
    this.conn = conn;
    this.greeting = greeting;
    this.apopTimestamp = /<[^<>\s]+@[^<>\s]+>/.exec(greeting)?.[0];
    this.options = options;
    this.tlsParams = tlsParams;
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    this._tls = tls;
    const signal = options.signal;
    const onAbort = () => this.conn.destroy(new Pop3AbortError(signal?.reason));
    signal?.addEventListener('abort', onAbort, { once: true });
    this.removeAbort = () => signal?.removeEventListener('abort', onAbort);
    conn.onClose = () => this.closed();
  }

  /** Connects, reads the greeting, does STLS when asked, reads CAPA, and logs in when `auth` is given. */
  static async connect(options: ConnectOptions): Promise<Pop3Client> {
    if (options.tls !== 'implicit' && options.tls !== 'starttls' && options.tls !== 'none') {
      throw new Pop3ClientError(Pop3ErrorCode.Options, "the tls option is required: 'implicit', 'starttls' or 'none'");
    }
    const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
    const { socket, tls, tlsParams } = await openTransport(options, timeoutMs);
    const signal = options.signal;

    const conn = new Connection(socket, { timeoutMs, debug: options.debug });
    let client: Pop3Client | undefined;
    try {
      const greeting = await conn.greeting();
      client = new Pop3Client(conn, greeting.text, options, tlsParams, tls);
      if (signal?.aborted) throw new Pop3AbortError(signal.reason);
      await client.refreshCapabilities();
      if (options.tls === 'starttls') await client.startTls();
      if (options.utf8 && client.caps.has('UTF8')) await client.utf8();
      if (options.auth) await client.login(options.auth);
      return client;
    } catch (err) {
      if (client) client.destroy();
      else conn.destroy(new Pop3ClosedError('connect failed'));
      throw err;
    }
  }

  /** AUTHORIZATION until login succeeds, TRANSACTION after, CLOSED after quit(), destroy() or a failure. */
  get state(): ClientState {
    return this._state;
  }

  /** The capabilities as last read (CAPA is re-read after STLS and after login, RFC 2449 §5). */
  get capabilities(): Capabilities {
    return this.caps;
  }

  /** TLS details when the connection is encrypted. */
  get tls(): TlsInfo | undefined {
    return this._tls;
  }

  get secure(): boolean {
    return this._tls !== undefined;
  }

  /** The mechanism login() used. */
  get mechanism(): AuthMechanism | undefined {
    return this._mechanism;
  }

  /** Commands allowed in flight at once (1 = no pipelining). */
  get pipelineWindow(): number {
    return this._window;
  }

  // --- AUTHORIZATION ---------------------------------------------------------------------------------------------

  /** RFC 2449 §5 CAPA. Resolves to an empty set when the server does not implement CAPA. */
  async capa(): Promise<Capabilities> {
    try {
      const r = await this.conn.multiLines('CAPA');
      this.caps = new Capabilities(r.lines);
    } catch (err) {
      if (!(err instanceof Pop3ResponseError)) throw err;
      this.caps = new Capabilities();
    }
    this.updateWindow();
    return this.caps;
  }

  /** RFC 6856 UTF8: before login, when advertised. */
  async utf8(): Promise<void> {
    this.expectState('AUTHORIZATION', 'UTF8');
    await this.conn.single('UTF8');
  }

  /** Logs in with the chosen (or strongest offered) mechanism, then re-reads CAPA. */
  async login(auth: AuthOptions): Promise<void> {
    this.expectState('AUTHORIZATION', 'login');
    const mech = await login(
      this.conn,
      auth,
      {
        caps: this.caps,
        apopTimestamp: this.apopTimestamp,
        secure: this.secure,
        allowInsecureAuth: this.options.allowInsecureAuth ?? false,
        host: this.options.host,
        port: this.options.port,
      },
      (e) => this.destroy(e),
    );
    this._mechanism = mech;
    this._state = 'TRANSACTION';
    await this.capa();
  }

  // --- TRANSACTION -----------------------------------------------------------------------------------------------

  /** RFC 1939 §5 STAT: number of messages and their total size in octets. */
  async stat(): Promise<StatResult> {
    this.expectState('TRANSACTION', 'STAT');
    const r = await this.conn.single('STAT');
    const m = /^(\d+) (\d+)/.exec(r.text);
    if (!m) throw new Pop3ProtocolError(`STAT: unparsable reply ${JSON.stringify(r.text.slice(0, 80))}`);
    return { count: Number(m[1]), size: Number(m[2]) };
  }

  /** RFC 1939 §5 LIST: every message's size, or one message's. */
  list(): Promise<ListEntry[]>;
  list(msn: number): Promise<ListEntry>;
  async list(msn?: number): Promise<ListEntry[] | ListEntry> {
    this.expectState('TRANSACTION', 'LIST');
    if (msn !== undefined) return parseListLine('LIST', (await this.conn.single('LIST', checkMsn(msn))).text);
    const r = await this.conn.multiLines('LIST');
    return r.lines.map((l) => parseListLine('LIST', l));
  }

  /** RFC 1939 §7 UIDL: every message's unique id, or one message's. */
  uidl(): Promise<UidlEntry[]>;
  uidl(msn: number): Promise<UidlEntry>;
  async uidl(msn?: number): Promise<UidlEntry[] | UidlEntry> {
    this.expectState('TRANSACTION', 'UIDL');
    if (msn !== undefined) return parseUidlLine((await this.conn.single('UIDL', checkMsn(msn))).text);
    const r = await this.conn.multiLines('UIDL');
    return r.lines.map(parseUidlLine);
  }

  /**
   * RFC 1939 §5 RETR: resolves at the server's +OK with the message as a stream (dot-unstuffed, byte-exact,
   * CRLF as sent). Read it to the end (or destroy it: the rest is then read and dropped) before the next reply
   * can be read; with pipelining, commands issued meanwhile are already on their way.
   */
  retrieve(msn: number): Promise<MessageStream> {
    // Not an async function: the stream's promise is returned as it is, without a second one wrapped around it.
    try {
      this.expectState('TRANSACTION', 'RETR');
      return this.conn.stream('RETR', checkMsn(msn));
    } catch (err) {
      return Promise.reject(err);
    }
  }

  /** RFC 1939 §7 TOP: the headers, the blank line, and the first `lines` lines of the body, as a stream. */
  async top(msn: number, lines: number): Promise<MessageStream> {
    this.expectState('TRANSACTION', 'TOP');
    if (!Number.isSafeInteger(lines) || lines < 0 || lines > MAX_MSN) {
      throw new RangeError(`TOP: lines must be a non-negative integer, got ${lines}`);
    }
    return this.conn.stream('TOP', `${checkMsn(msn)} ${lines}`);
  }

  /**
   * RETR of many messages at once, pipelined, with the bodies handed to `sink` in order, as they arrive: no
   * stream, promise or closure per message, so a mailbox of small messages costs little more than its bytes.
   * Resolves when the last body has been handed over; rejects with the first -ERR (the remaining replies are read
   * and dropped; the connection stays usable) or with the connection's failure. See RetrieveSink.
   */
  async retrieveEach(msns: readonly number[], sink: RetrieveSink): Promise<void> {
    this.expectState('TRANSACTION', 'RETR');
    return this.conn.many('RETR', msns.map(checkMsn), sink);
  }

  /** DELE for each message, pipelined, one promise for all (see delete()). */
  async deleteEach(msns: readonly number[]): Promise<void> {
    this.expectState('TRANSACTION', 'DELE');
    return this.conn.many('DELE', msns.map(checkMsn));
  }

  /** RFC 1939 §5 DELE: marks the message; the server removes it only when quit() succeeds. */
  async delete(msn: number): Promise<void> {
    this.expectState('TRANSACTION', 'DELE');
    await this.conn.single('DELE', checkMsn(msn));
  }

  /** RFC 1939 §5 RSET: unmarks every message marked by delete(). */
  async reset(): Promise<void> {
    this.expectState('TRANSACTION', 'RSET');
    await this.conn.single('RSET');
  }

  /** RFC 1939 §5 NOOP. */
  async noop(): Promise<void> {
    this.expectState('TRANSACTION', 'NOOP');
    await this.conn.single('NOOP');
  }

  /**
   * Every message as { number, uidl, size }, in message-number order (LIST and UIDL, pipelined when the server
   * allows). Messages marked deleted are not listed by the server, so they are not yielded.
   */
  async *messages(): AsyncGenerator<MessageInfo> {
    yield* await this.messageList();
  }

  /** What messages() yields, as one array: no promise per message, for a mailbox of many. */
  async messageList(): Promise<MessageInfo[]> {
    this.expectState('TRANSACTION', 'messages');
    const [sizes, ids] = await Promise.all([this.list(), this.uidl()]);
    const out: MessageInfo[] = [];
    // Servers list both in the same order, so the entry at the same place is nearly always the one; a Map of
    // the unique-id listing is made only for one that does not.
    let uidlOf: Map<number, string> | undefined;
    for (let i = 0; i < sizes.length; i++) {
      const { number, size } = sizes[i];
      let uidl = ids[i]?.number === number ? ids[i].uidl : undefined;
      if (uidl === undefined) {
        uidlOf ??= new Map(ids.map((u) => [u.number, u.uidl]));
        uidl = uidlOf.get(number);
      }
      if (uidl === undefined) throw new Pop3ProtocolError(`UIDL listing has no entry for message ${number}`);
      out.push({ number, uidl, size });
    }
    return out;
  }

  /**
   * RFC 1939 §6 QUIT: the server commits deletions (UPDATE state) and closes. A -ERR here (e.g. [SYS/TEMP])
   * means the deletions did not happen; it is thrown after the connection is closed.
   */
  async quit(): Promise<void> {
    if (this.quitDone) return;
    const reason = this.conn.closedReason;
    if (reason) throw reason; // closed without QUIT: deletions did not happen, say so
    let failure: unknown;
    try {
      await this.conn.single('QUIT', '', { barrier: true });
    } catch (err) {
      failure = err;
    }
    await this.conn.end();
    this.closed();
    if (failure) throw failure;
    this.quitDone = true;
  }

  /** Closes the connection at once, without QUIT: nothing marked for deletion is deleted. */
  destroy(err?: Pop3ClientError): void {
    this.conn.destroy(err ?? new Pop3ClosedError('client destroyed the connection'));
    this.closed();
  }

  // --- internals -------------------------------------------------------------------------------------------------

  /** RFC 2595 §4 STLS and the handshake, then CAPA again (§4: it may have changed). */
  private async startTls(): Promise<void> {
    this._tls = await startTls(this.conn, this.tlsParams, this.timeoutMs, this.options.signal);
    await this.capa();
  }

  private async refreshCapabilities(): Promise<void> {
    await this.capa();
  }

  private updateWindow(): void {
    const opt = this.options.pipelining ?? true;
    const want = opt === true ? DEFAULT_PIPELINE_WINDOW : opt === false ? 1 : Math.max(1, Math.floor(opt));
    this._window = this.caps.has('PIPELINING') ? want : 1;
    this.conn.setWindow(this._window);
  }

  private expectState(state: ClientState, what: string): void {
    const reason = this.conn.closedReason;
    if (reason) throw reason;
    if (this._state !== state) {
      throw new Pop3ClientError(
        Pop3ErrorCode.State,
        `${what} is only valid in the ${state} state (now ${this._state})`,
      );
    }
  }

  private closed(): void {
    this._state = 'CLOSED';
    this.removeAbort();
  }
}
