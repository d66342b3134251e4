/**
 * The client side of the POP3 wire: writes commands, matches replies to them in order, frames each reply (status
 * line, then a dot-terminated body for positive multi-line replies) as it streams in. It owns one Duplex (a TCP
 * or TLS socket, or a fake in tests) and knows nothing of what the commands mean; client.ts does. The command
 * queue and pipelining are in pipeline.ts, what each kind of body becomes in bodies.ts.
 */
import type { Duplex } from 'node:stream';
import { LineReader } from '../protocol/lineReader.ts';
import { type BodyHost, bodyData, closeBody, openBody } from './bodies.ts';
import { Pop3ClientError, Pop3ClosedError, Pop3ProtocolError, Pop3TimeoutError } from './errors.ts';
import type { MessageSource, MessageStream } from './message.ts';
import {
  CommandPipeline,
  type DebugFn,
  type OkReply,
  type Pending,
  type ReplyKind,
  type RetrieveSink,
  settle,
} from './pipeline.ts';
import { clip, isPlainOk, MAX_STATUS_LINE, parseStatus } from './status.ts';
import { REUSED_BUFFER_READS, type ReusedBufferReads } from './transport.ts';

export type { DebugFn, OkReply, RetrieveSink } from './pipeline.ts';

const LF = 0x0a;
const CR = 0x0d;
const EMPTY = Buffer.alloc(0);

export interface ConnectionOptions {
  timeoutMs: number;
  debug?: DebugFn;
}

export class Connection implements BodyHost {
  private socket: Duplex;
  private readonly lines = new LineReader({ maxLine: MAX_STATUS_LINE });
  private readonly commands = new CommandPipeline();
  /** Written commands whose replies are not complete, oldest first (the pipeline's). */
  private readonly inflight: Pending[] = this.commands.inflight;
  private timer: NodeJS.Timeout | undefined;
  readonly streamSource: MessageSource = {
    resume: () => this.resumeForStream(),
    abandon: () => this.resumeForStream(),
    waiting: { bytes: 0 },
  };
  /** Socket paused because a message stream's consumer is behind. */
  private pausedForStream = false;
  /** A sink's end() promise is pending: bytes that arrive meanwhile wait here, unparsed. */
  private blocked = false;
  private held: Buffer = EMPTY;
  /** The transport reuses its read buffer: bytes kept beyond a call are copied (see openTcp). */
  private reused: ReusedBufferReads | undefined;
  private failure: Pop3ClientError | undefined;
  private readonly timeoutMs: number;
  private readonly debug: DebugFn | undefined;
  /** Called once when the connection fails or closes, with the reason. */
  onClose: ((err: Pop3ClientError) => void) | undefined;

  constructor(socket: Duplex, options: ConnectionOptions) {
    this.socket = socket;
    this.timeoutMs = options.timeoutMs;
    this.debug = options.debug;
    this.attach(socket);
  }

  /** Why the connection is unusable, or undefined while it is open. */
  get closedReason(): Pop3ClientError | undefined {
    return this.failure;
  }

  /** The transport in use (a TLSSocket after STLS). */
  get transport(): Duplex {
    return this.socket;
  }

  /** Replies not yet complete plus commands not yet sent. */
  get pending(): number {
    return this.commands.pending;
  }

  setWindow(window: number): void {
    this.commands.setWindow(window);
    this.pump();
  }

  /** The server's greeting (RFC 1939 §4): the first status line, before any command. */
  greeting(): Promise<OkReply> {
    return this.enqueue('greeting', null, '', true, { type: 'single' }) as Promise<OkReply>;
  }

  /** A command with a single-line reply. */
  single(verb: string, args: string = '', opts: { barrier?: boolean; debugText?: string } = {}): Promise<OkReply> {
    const line = args === '' ? verb : `${verb} ${args}`;
    return this.enqueue(verb, line, opts.debugText ?? line, opts.barrier ?? false, {
      type: 'single',
    }) as Promise<OkReply>;
  }

  /** A command whose positive reply is a multi-line list of short lines (LIST, UIDL, CAPA). */
  multiLines(verb: string, args = ''): Promise<{ text: string; lines: string[] }> {
    const line = args === '' ? verb : `${verb} ${args}`;
    return this.enqueue(verb, line, line, false, {
      type: 'lines',
      lines: [],
      parts: [],
      tail: 0,
      cr: false,
    }) as Promise<{ text: string; lines: string[] }>;
  }

  /** A command whose positive reply is a message (RETR, TOP): resolves at +OK with the streaming body. */
  stream(verb: string, args: string): Promise<MessageStream> {
    const line = `${verb} ${args}`;
    return this.enqueue(verb, line, line, false, { type: 'stream' }) as Promise<MessageStream>;
  }

  /**
   * The same command for each of `args` (RETR or TOP with a sink; or single-line commands such as DELE with no
   * sink), pipelined within the window, with one promise for all of them: it resolves when every reply is in and
   * rejects with the first failure (a -ERR, or the connection's). After a -ERR the remaining bodies are read and
   * dropped, and the connection stays usable.
   */
  many(verb: string, args: readonly string[], sink?: RetrieveSink): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const run = this.commands.run(verb, args, sink);
    this.pump();
    return run;
  }

  /**
   * An RFC 5034 AUTH exchange: each "+ challenge" line is answered with onChallenge's line (base64, or "*" to
   * cancel). Resolves with the final +OK; rejects with the -ERR.
   */
  sasl(line: string, debugText: string, onChallenge: (challenge: string) => Promise<string>): Promise<OkReply> {
    return this.enqueue('AUTH', line, debugText, true, { type: 'sasl', onChallenge }) as Promise<OkReply>;
  }

  /**
   * Swaps the transport after STLS's +OK (RFC 2595 §4). Nothing may be buffered: bytes that arrived in the clear
   * after the +OK could be an attacker's injection and must never be read as replies once TLS is up.
   */
  detachForUpgrade(): Duplex {
    if (this.lines.buffered > 0) {
      this.fail(new Pop3ProtocolError('server sent data after its STLS reply, before the TLS handshake'));
      throw this.failure;
    }
    this.detach(this.socket);
    return this.socket;
  }

  attachUpgraded(socket: Duplex): void {
    this.socket = socket;
    this.attach(socket);
  }

  /** Ends the connection politely (after QUIT) and resolves when the socket is closed, bounded by timeoutMs. */
  async end(): Promise<void> {
    const s = this.socket;
    if (!this.failure) this.fail(new Pop3ClosedError('connection closed'));
    if (s.destroyed) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        resolve();
      }, this.timeoutMs);
      s.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      s.end();
    });
  }

  /** Closes the transport at once and fails everything pending with `err`. */
  destroy(err: Pop3ClientError): void {
    this.fail(err);
    this.socket.destroy();
  }

  // ---------------------------------------------------------------------------------------------------------------

  private readonly onData = (chunk: Buffer): void => {
    try {
      this.consume(chunk);
    } catch (err) {
      this.destroy(err instanceof Pop3ClientError ? err : new Pop3ProtocolError(String(err)));
    }
    this.armTimer();
  };
  private readonly onEnd = (): void => {
    this.destroy(new Pop3ClosedError('server closed the connection'));
  };
  private readonly onError = (err: Error): void => {
    this.destroy(new Pop3ClosedError(`connection error: ${err.message}`, { cause: err }));
  };

  private attach(s: Duplex): void {
    this.reused = (s as Duplex & { [REUSED_BUFFER_READS]?: ReusedBufferReads })[REUSED_BUFFER_READS];
    if (this.reused) {
      this.reused.onData = this.onData;
      for (const chunk of this.reused.early.splice(0)) this.onData(chunk);
    } else s.on('data', this.onData);
    s.on('end', this.onEnd);
    s.on('close', this.onEnd);
    s.on('error', this.onError);
  }

  private detach(s: Duplex): void {
    if (this.reused) this.reused.onData = undefined;
    this.reused = undefined;
    s.off('data', this.onData);
    s.off('end', this.onEnd);
    s.off('close', this.onEnd);
    s.off('error', this.onError);
    this.clearTimer();
  }

  private enqueue(verb: string, line: string | null, debugText: string, barrier: boolean, kind: ReplyKind) {
    if (this.failure) return Promise.reject(this.failure);
    const reply = this.commands.add(verb, line, debugText, barrier, kind);
    this.pump();
    return reply;
  }

  /** Writes the queued commands that the window and the barriers allow, all in one write. */
  private pump(): void {
    if (this.failure) return;
    const commands = this.commands;
    commands.feed();
    if (commands.holding) return;
    const wire = commands.take(this.debug);
    if (wire) this.socket.write(wire);
    this.armTimer();
  }

  private consume(chunk: Buffer): void {
    let data = chunk;
    /** `data` is ours to keep (not a view of a transport's reused buffer). */
    let owned = this.reused === undefined;
    for (;;) {
      if (this.blocked) {
        // A sink is still storing the last message: keep the rest for when it is done (the socket is paused).
        if (data.length > 0) this.held = Buffer.concat([this.held, data]); // a copy: `data` may be reused
        return;
      }
      const head = this.inflight[0];
      if (head?.decoder) {
        if (data.length === 0) return;
        if (!owned && head.kind.type === 'stream') {
          // A message stream keeps what it is given: one copy of the rest of the read serves every body in it.
          data = Buffer.from(data);
          owned = true;
        }
        const r = head.decoder.push(data);
        bodyData(this, head, r.data, owned);
        if (!r.done) return;
        data = r.rest;
        closeBody(this, head);
        continue;
      }
      // A status line. Only the bytes up to its LF go through the line reader; what follows (a body, the next
      // reply) stays in `data`, so a body's long lines never meet the status line's length limit. The common case,
      // a whole line in `data` with nothing held from before, is read in place (no copy, nothing allocated).
      const lf = this.lines.buffered === 0 ? data.indexOf(LF) : -1;
      if (lf !== -1) {
        const line = data.subarray(0, lf > 0 && data[lf - 1] === CR ? lf - 1 : lf);
        data = data.subarray(lf + 1);
        if (line.length > MAX_STATUS_LINE) throw new Pop3ProtocolError('server sent a line longer than the limit');
        if (!head) throw new Pop3ProtocolError(`unexpected line from server: ${JSON.stringify(clip(line))}`);
        this.status(head, line);
        if (data.length === 0 && !head.decoder) return;
        continue;
      }
      if (data.length > 0) {
        const at = data.indexOf(LF);
        // A part kept until the line's end arrives is a copy when the transport reuses its buffer.
        this.lines.push(at !== -1 ? data.subarray(0, at + 1) : owned ? data : Buffer.from(data));
        data = at === -1 ? EMPTY : data.subarray(at + 1);
      }
      const next = this.lines.next();
      if (next === null) return;
      if (next.kind === 'toolong') throw new Pop3ProtocolError('server sent a line longer than the limit');
      if (!head) throw new Pop3ProtocolError(`unexpected line from server: ${JSON.stringify(clip(next.line))}`);
      this.status(head, next.line);
      if (data.length === 0 && !head.decoder) return;
    }
  }

  /** A sink's end() for `head` returned a promise: stop reading until it settles, then settle `head`. */
  blockOn(p: Promise<void>, head: Pending): void {
    this.inflight.shift();
    this.blocked = true;
    this.socket.pause();
    this.clearTimer();
    p.then(
      () => {
        this.blocked = false;
        settle(head, null);
        if (this.failure) return;
        this.pump();
        this.socket.resume();
        const rest = this.held;
        this.held = EMPTY;
        try {
          this.consume(rest);
        } catch (err) {
          this.destroy(err instanceof Pop3ClientError ? err : new Pop3ProtocolError(String(err)));
        }
        this.armTimer();
      },
      (err: unknown) => {
        this.blocked = false;
        const e = err instanceof Error ? err : new Error(String(err));
        settle(head, e); // the caller sees the sink's own error
        this.destroy(err instanceof Pop3ClientError ? err : new Pop3ClosedError(e.message, { cause: err }));
      },
    );
  }

  /** Handles the status line of `head`'s reply. */
  private status(head: Pending, raw: Buffer): void {
    const type = head.kind.type;
    if ((type === 'sink' || type === 'stream') && !this.debug && isPlainOk(raw)) {
      // The common case of RETR (a pipelined run, or retrieve()), without the string work below: the text after
      // +OK of a message's reply is not used.
      openBody(this, head, '');
      return;
    }
    const line = raw.toString('utf8');
    this.debug?.('S', line);
    const status = parseStatus(head, line, raw);
    if (status.type === 'challenge') this.answer(head, status.challenge);
    else if (status.type === 'err') this.complete(head, status.error);
    else openBody(this, head, status.text);
  }

  /** RFC 5034 §4: a "+ challenge" line asks for the next client response. */
  private answer(head: Pending, challenge: string): void {
    if (head.kind.type !== 'sasl') return;
    head.kind.onChallenge(challenge).then(
      (answer) => {
        if (this.failure || head.settled) return;
        this.debug?.('C', answer === '*' ? '*' : '<sasl response redacted>');
        this.socket.write(`${answer}\r\n`);
      },
      (e: unknown) => {
        if (this.failure || head.settled) return;
        // Cancel the exchange (RFC 5034 §4); the server answers -ERR, which settles with this error instead.
        head.kind = { type: 'single' };
        this.socket.write('*\r\n');
        this.debug?.('C', '*');
        settle(head, e instanceof Error ? e : new Error(String(e)));
      },
    );
  }

  pauseForStream(): void {
    if (this.pausedForStream) return;
    this.pausedForStream = true;
    this.socket.pause();
  }

  resumeForStream(): void {
    if (!this.pausedForStream) return;
    this.pausedForStream = false;
    if (!this.failure) this.socket.resume();
    this.armTimer();
  }

  /** The reply of the head command is complete: drop it, settle it, send what waited for it. */
  complete(head: Pending, err: Error | null, value?: unknown): void {
    this.inflight.shift();
    settle(head, err, value);
    this.pump();
  }

  private fail(err: Pop3ClientError): void {
    if (this.failure) return;
    this.failure = err;
    this.clearTimer();
    this.commands.failAll(err);
    this.onClose?.(err);
  }

  /** The idle timer runs while a reply is due and we are not the ones holding the socket back. */
  private armTimer(): void {
    if (this.failure || this.inflight.length === 0 || this.pausedForStream || this.blocked) {
      this.clearTimer();
      return;
    }
    // Called for every chunk read: restart the one timer rather than making a new one.
    if (this.timer) this.timer.refresh();
    else this.timer = setTimeout(this.onTimeout, this.timeoutMs);
  }

  private readonly onTimeout = (): void => {
    this.timer = undefined;
    const verb = this.inflight[0]?.verb ?? 'reply';
    this.destroy(new Pop3TimeoutError(`${verb}: no reply from server within ${this.timeoutMs} ms`));
  };

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
