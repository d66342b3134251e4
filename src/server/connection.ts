/**
 * The bytes of one POP3 connection, with no protocol in them: the socket, the bounded line reader, the output
 * queue (pipelined replies gathered into one write), flushing and draining with backpressure, the idle timer,
 * the swap to a TLS socket after STLS, and the ways out (close, destroy, teardown). What a line means is the
 * session's business (./session.ts); this file only calls it back.
 */
import type { Socket } from 'node:net';
import { type SecureContext, TLSSocket } from 'node:tls';
import type { Logger } from 'pino';
import { LineReader, type LineResult } from '../protocol/lineReader.ts';

/** Input buffered beyond this (a client pipelining far ahead) pauses reading until it is consumed. */
const INPUT_HIGH_WATER = 64 * 1024;
/** Multi-line listings (LIST, UIDL) are written in pieces of about this size, with backpressure. */
const LISTING_CHUNK = 64 * 1024;
/** Replies of a pipelined batch are gathered up to about this size before one write. */
const OUTPUT_BATCH = 256 * 1024;
/** A client that never reads must not keep the socket (and the maildrop lock) forever after a close. */
const CLOSE_LINGER_MS = 5_000;

/** What the connection calls back into: the protocol side (the session). */
export interface ConnectionHandler {
  /** Runs one input line; the next line is taken only once this has settled. */
  line(r: LineResult): void | Promise<void>;
  /** The idle timeout in force now (it depends on the protocol state). */
  idleTimeoutMs(): number;
  /** The idle timer fired; the handler says goodbye and closes. */
  idle(): void;
  /** The connection is gone (once), with the reason it ended. */
  closed(reason: string): void | Promise<void>;
}

/** How the TLS socket of an STLS upgrade is made (the policy is commands/stls.ts). */
export interface TlsUpgrade {
  readonly secureContext: SecureContext;
  readonly sniCallback?: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
  readonly requestCert: boolean;
  /** limits.tls_handshake_timeout: the same limit as on implicit-TLS listeners (server.ts). */
  readonly handshakeTimeoutMs: number;
}

export class Connection {
  /** Wire bytes written, for the logout summary and the metrics. */
  bytesSent = 0;
  private socket: Socket;
  private readonly reader: LineReader;
  /** Replies not yet written: lines with their CRLF, and whole small messages. */
  private out: (string | Buffer)[] = [];
  private outBytes = 0;
  private busy = false;
  private paused = false;
  private closed = false;
  private tornDown = false;
  private idleTimer: NodeJS.Timeout | undefined;
  private idleMs = 0;
  private closeReason = 'client';
  private continuation: ((line: LineResult | null) => void) | undefined;
  private readonly onDataBound = (chunk: Buffer) => this.onData(chunk);

  constructor(
    socket: Socket,
    /** True on implicit TLS, behind a proxy that ended TLS, or once STLS is done. */
    private secureNow: boolean,
    maxLine: number,
    private readonly log: Logger,
    private readonly handler: ConnectionHandler,
  ) {
    this.socket = socket;
    // One -ERR per overlong line, when its end arrives (issue 13 #1), like any other bad command.
    this.reader = new LineReader({ maxLine, tooLong: 'at-end' });
  }

  get secure(): boolean {
    return this.secureNow;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** A line is being run (or a message sent) right now. */
  get isBusy(): boolean {
    return this.busy;
  }

  /** The current socket: a TLSSocket after STLS or on implicit TLS. */
  get transport(): Socket {
    return this.socket;
  }

  start(): void {
    this.attach(this.socket);
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

  /**
   * The next line from the client inside a command (SASL continuations, RFC 5034 §4), or null once the
   * connection is gone. Pending replies (the challenge) are flushed first.
   */
  readContinuation(): Promise<LineResult | null> {
    const r = this.reader.next();
    if (r) return Promise.resolve(r);
    if (this.closed) return Promise.resolve(null);
    this.flush();
    if (this.paused) this.resumeReading();
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
        await this.handler.line(r);
        if (this.socket.writableNeedDrain) {
          this.flush();
          await this.drain();
        }
        if (this.paused && this.reader.buffered < INPUT_HIGH_WATER / 2) this.resumeReading();
      }
      // No complete line is buffered now, only the start of one (at most maxLine + 1 bytes): reading must go
      // on, or its end would never arrive and neither would a hang-up (issue 13 #1: a backlog that ended in a
      // 32 KiB unfinished line left the socket paused for good, the session silent and the maildrop locked).
      if (this.paused) this.resumeReading();
    } catch (err) {
      this.log.error({ err }, 'session failure');
      this.destroy('internal error');
    } finally {
      this.busy = false;
      this.flush();
    }
  }

  private resumeReading(): void {
    this.paused = false;
    this.socket.resume();
  }

  // ----- output --------------------------------------------------------------------------------------------

  /** Queues one reply line (without CRLF); queued lines go out together, which answers pipelines in one write. */
  reply(line: string): void {
    if (this.closed) return;
    this.out.push(`${line}\r\n`);
    this.outBytes += line.length + 2;
  }

  /** Queues wire bytes behind the pending replies; a large queue is written at once. */
  queue(buf: Buffer): void {
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
    this.bytesSent += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
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

  /**
   * Writes wire bytes now (after flush()), waiting while the socket is full. `sent` is called once the socket no
   * longer holds `buf` (written, failed, or the connection gone), so a caller can reuse its buffers.
   */
  async write(buf: Buffer, sent?: () => void): Promise<void> {
    if (this.closed || buf.length === 0) {
      sent?.();
      return;
    }
    this.bytesSent += buf.length;
    if (!this.socket.write(buf, sent && (() => sent()))) await this.drain();
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
        await this.write(Buffer.from(`${piece.join('\r\n')}\r\n`));
        piece = [];
        size = 0;
      }
    }
    piece.push('.');
    await this.write(Buffer.from(`${piece.join('\r\n')}\r\n`));
  }

  // ----- STLS ----------------------------------------------------------------------------------------------

  /**
   * Swaps the plain socket for a TLS one (server side) after the STLS +OK has been written. Bytes already
   * received in the clear are discarded.
   */
  startTls(upgrade: TlsUpgrade): void {
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
      secureContext: upgrade.secureContext,
      SNICallback: upgrade.sniCallback,
      requestCert: upgrade.requestCert,
      rejectUnauthorized: false,
    });
    const timer = setTimeout(() => {
      this.log.info('STLS handshake timeout');
      tls.destroy();
    }, upgrade.handshakeTimeoutMs);
    timer.unref();
    this.socket = tls;
    // A TLSSocket emits no data before its handshake completes, so no command can run in between.
    tls.once('secure', () => {
      clearTimeout(timer);
      this.secureNow = true;
      this.log.debug({ tlsVersion: tls.getProtocol() }, 'STLS established');
      this.armIdle();
    });
    this.attach(tls);
    tls.on('error', () => {
      clearTimeout(timer);
      tls.destroy();
    });
    plain.on('error', () => tls.destroy());
  }

  // ----- timers and the ways out ---------------------------------------------------------------------------

  /** (Re)starts the idle timer with the timeout the handler says is in force now. */
  armIdle(): void {
    if (this.closed) return;
    const ms = this.handler.idleTimeoutMs();
    // The same timeout as before (every command but the login): restart the timer rather than make a new one.
    if (this.idleTimer !== undefined && ms === this.idleMs) {
      this.idleTimer.refresh();
      return;
    }
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleMs = ms;
    this.idleTimer = setTimeout(() => this.handler.idle(), ms);
    this.idleTimer.unref();
  }

  /** Ends the connection after queued replies are written. */
  close(reason: string): void {
    if (this.closed) return;
    this.closeReason = reason;
    this.flush();
    this.closed = true;
    this.socket.end();
    setTimeout(() => this.socket.destroy(), CLOSE_LINGER_MS).unref();
    void this.teardown();
  }

  /** Drops the connection at once; queued replies are lost. */
  destroy(reason?: string): void {
    if (reason !== undefined) this.closeReason = reason;
    this.closed = true;
    this.socket.destroy();
    void this.teardown();
  }

  private async teardown(): Promise<void> {
    if (this.tornDown) return;
    this.tornDown = true;
    this.closed = true;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    const waiting = this.continuation;
    this.continuation = undefined;
    waiting?.(null);
    await this.handler.closed(this.closeReason);
  }
}
