/**
 * The client side of the POP3 wire: writes commands, matches replies to them in order, decodes multi-line
 * bodies as they stream in. It owns one Duplex (a TCP or TLS socket, or a fake in tests) and knows nothing of
 * what the commands mean; client.ts does.
 *
 * Pipelining (RFC 2449 §6.6): commands wait in `queue`; up to `window` of them are written ahead of their
 * replies and sit in `inflight`, oldest first. Replies arrive in order, so the head of `inflight` owns the
 * next bytes. A window of 1 is the plain RFC 1939 one-at-a-time dialogue. Commands that change the session's
 * state or the transport (STLS, AUTH, USER, PASS, APOP, QUIT) are barriers: written only when nothing else is in
 * flight, and nothing is written after them until their reply is complete.
 */
import type { Duplex } from 'node:stream';
import { DotDecoder } from '../protocol/dot.ts';
import { LineReader } from '../protocol/lineReader.ts';
import {
  Pop3ClientError,
  Pop3ClosedError,
  Pop3ProtocolError,
  Pop3ResponseError,
  Pop3TimeoutError,
  splitRespCode,
} from './errors.ts';
import { MessageStream } from './message.ts';
import { REUSED_BUFFER_READS, type ReusedBufferReads } from './transport.ts';

const LF = 0x0a;
const EMPTY = Buffer.alloc(0);

/**
 * Longest status line accepted. RFC 2449 §4 caps responses at 512 octets; greetings and -ERR texts from real
 * servers sometimes exceed it, so allow some slack, but never an unbounded line.
 */
export const MAX_STATUS_LINE = 4096;
/** Longest line in a LIST/UIDL/CAPA body (a UIDL line is at most ~82 octets; CAPA lines are short too). */
export const MAX_LIST_LINE = 4096;

export type DebugFn = (direction: 'C' | 'S', line: string) => void;

/** The reply to a single-line command: the text after "+OK ". */
export interface OkReply {
  text: string;
}

/**
 * Where the bodies of many RETR (or TOP) replies go, without a stream or a promise per message: the connection
 * calls these in order, for message `index` of the list given to Connection.many(). Body bytes are dot-unstuffed
 * and byte-exact (CRLF as sent); `chunk` may be a view of the socket's buffer, valid during the call only unless
 * copied. A callback that throws closes the connection (the error fails the whole call): that is how a consumer
 * stops a server that sends more than it should. `end` may return a promise: nothing more is read until it
 * settles (a rejection closes the connection too).
 */
export interface RetrieveSink {
  /** The +OK for message `index` came; its body follows. */
  begin?(index: number): void;
  data(chunk: Buffer, index: number): void;
  end(index: number): void | Promise<void>;
}

/** The shared state of one Connection.many() call. */
interface SinkBatch {
  sink: RetrieveSink;
  error: Error | undefined;
  /** One reply came (positive). */
  one(): void;
  reject(err: Error): void;
}

/** A many() run whose commands are not all in the queue yet. */
interface Feeder {
  verb: string;
  args: readonly string[];
  next: number;
  batch: SinkBatch;
  sink: boolean;
}

/** How the reply to a command is read. */
type ReplyKind =
  | { type: 'single' }
  | { type: 'lines'; lines: string[]; reader: LineReader }
  | { type: 'stream'; stream?: MessageStream; abandoned: boolean }
  | { type: 'sasl'; onChallenge: (challenge: string) => Promise<string> }
  | { type: 'sink'; batch: SinkBatch; index: number }
  | { type: 'each'; batch: SinkBatch };

interface Pending {
  verb: string;
  /** Bytes to write, CRLF included; null for the greeting (nothing to send). */
  wire: Buffer | null;
  /** What the debug hook sees instead of `wire` (passwords and SASL payloads replaced). */
  debugText: string;
  barrier: boolean;
  kind: ReplyKind;
  resolve(value: unknown): void;
  reject(err: Error): void;
  /** Reading the body of a positive multi-line reply. */
  decoder?: DotDecoder;
  settled: boolean;
}

export interface ConnectionOptions {
  timeoutMs: number;
  debug?: DebugFn;
}

export class Connection {
  private socket: Duplex;
  private readonly lines = new LineReader({ maxLine: MAX_STATUS_LINE });
  private readonly queue: Pending[] = [];
  private readonly inflight: Pending[] = [];
  private readonly feeders: Feeder[] = [];
  private window = 1;
  private timer: NodeJS.Timeout | undefined;
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
    let fed = 0;
    for (const f of this.feeders) fed += f.args.length - f.next;
    return this.inflight.length + this.queue.length + fed;
  }

  setWindow(window: number): void {
    this.window = Math.max(1, Math.floor(window));
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
      reader: new LineReader({ maxLine: MAX_LIST_LINE }),
    }) as Promise<{ text: string; lines: string[] }>;
  }

  /** A command whose positive reply is a message (RETR, TOP): resolves at +OK with the streaming body. */
  stream(verb: string, args: string): Promise<MessageStream> {
    const line = `${verb} ${args}`;
    return this.enqueue(verb, line, line, false, { type: 'stream', abandoned: false }) as Promise<MessageStream>;
  }

  /**
   * The same command for each of `args` (RETR or TOP with a sink; or single-line commands such as DELE with no
   * sink), pipelined within the window, with one promise for all of them: it resolves when every reply is in and
   * rejects with the first failure (a -ERR, or the connection's). After a -ERR the remaining bodies are read and
   * dropped, and the connection stays usable.
   */
  many(verb: string, args: readonly string[], sink?: RetrieveSink): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (this.failure) {
        reject(this.failure);
        return;
      }
      if (args.length === 0) {
        resolve();
        return;
      }
      for (const a of args) {
        if (/[\r\n]/.test(a)) {
          reject(new TypeError(`${verb}: arguments must not contain CR or LF`));
          return;
        }
      }
      let left = args.length;
      const batch: SinkBatch = {
        sink: sink ?? { data() {}, end() {} },
        error: undefined,
        one: () => {
          if (--left === 0 && !batch.error) resolve();
        },
        reject: (err: Error) => {
          if (batch.error) return;
          batch.error = err;
          reject(err);
        },
      };
      // Commands are made as the window drains, not all at once: a run over 100 000 messages holds a window's
      // worth of them, and the replies are settled by two functions shared by the whole run.
      this.feeders.push({ verb, args, next: 0, batch, sink: sink !== undefined });
      this.pump();
    });
  }

  /** Moves commands of many() runs into the queue, as much as the window can use. */
  private feed(): void {
    while (this.feeders.length > 0 && this.queue.length < this.window) {
      const f = this.feeders[0];
      const i = f.next++;
      if (f.next === f.args.length) this.feeders.shift();
      const line = `${f.verb} ${f.args[i]}`;
      this.queue.push({
        verb: f.verb,
        wire: Buffer.from(`${line}\r\n`, 'latin1'),
        debugText: line,
        barrier: false,
        kind: f.sink ? { type: 'sink', batch: f.batch, index: i } : { type: 'each', batch: f.batch },
        resolve: f.batch.one,
        reject: f.batch.reject,
        settled: false,
      });
    }
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
    return new Promise((resolve, reject) => {
      if (this.failure) {
        reject(this.failure);
        return;
      }
      if (line !== null && /[\r\n]/.test(line)) {
        // A CR or LF in an argument would smuggle a second command onto the wire.
        reject(new TypeError(`${verb}: arguments must not contain CR or LF`));
        return;
      }
      const p: Pending = {
        verb,
        wire: line === null ? null : Buffer.from(`${line}\r\n`, 'utf8'),
        debugText,
        barrier,
        kind,
        resolve,
        reject,
        settled: false,
      };
      this.queue.push(p);
      this.pump();
    });
  }

  /**
   * Writes queued commands while the window and the barriers allow, all in one write. Once the window is full it
   * is refilled only when half of it has been answered, so a long pipelined run costs a write per half window,
   * not one per command.
   */
  private pump(): void {
    if (this.failure) return;
    this.feed();
    const busy0 = this.inflight.length;
    if (busy0 > 1 && busy0 > this.window >> 1 && this.queue.length > 0 && !this.queue[0].barrier) return;
    const wires: Buffer[] = [];
    let taken = 0;
    const queue = this.queue;
    while (taken < queue.length) {
      const next = queue[taken];
      const busy = this.inflight.length;
      if (busy > 0 && (next.barrier || this.inflight[busy - 1].barrier || busy >= this.window)) break;
      taken++;
      this.inflight.push(next);
      if (next.wire) {
        this.debug?.('C', next.debugText);
        wires.push(next.wire);
      }
    }
    if (taken > 0) queue.splice(0, taken);
    if (this.feeders.length > 0 && queue.length < this.window) {
      // Top the queue up for the next refill.
      this.feed();
    }
    if (wires.length > 0) this.socket.write(wires.length === 1 ? wires[0] : Buffer.concat(wires));
    this.armTimer();
  }

  private consume(chunk: Buffer): void {
    let data = chunk;
    for (;;) {
      if (this.blocked) {
        // A sink is still storing the last message: keep the rest for when it is done (the socket is paused).
        if (data.length > 0) this.held = Buffer.concat([this.held, data]); // a copy: `data` may be reused
        return;
      }
      const head = this.inflight[0];
      if (head?.decoder) {
        if (data.length === 0) return;
        const r = head.decoder.push(data);
        this.body(head, r.data);
        if (!r.done) return;
        data = r.rest;
        this.finishBody(head);
        continue;
      }
      // A status line. Only the bytes up to its LF go through the line reader; what follows (a body, the next
      // reply) stays in `data`, so a body's long lines never meet the status line's length limit.
      if (data.length > 0) {
        const lf = data.indexOf(LF);
        if (lf === -1) {
          // Kept until the line's end arrives: a copy when the transport reuses its buffer.
          this.lines.push(this.reused ? Buffer.from(data) : data);
          data = EMPTY;
        } else {
          this.lines.push(lf + 1 === data.length ? data : data.subarray(0, lf + 1));
          data = data.subarray(lf + 1);
        }
      }
      const next = this.lines.next();
      if (next === null) return;
      if (next.kind === 'toolong') throw new Pop3ProtocolError('server sent a line longer than the limit');
      if (!head) {
        throw new Pop3ProtocolError(`unexpected line from server: ${JSON.stringify(clip(next.line))}`);
      }
      this.status(head, next.line);
      if (data.length === 0 && !head.decoder) return;
    }
  }

  /** A sink's end() for `head` returned a promise: stop reading until it settles, then settle `head`. */
  private block(p: Promise<void>, head: Pending): void {
    this.blocked = true;
    this.socket.pause();
    this.clearTimer();
    p.then(
      () => {
        this.blocked = false;
        this.settle(head, null);
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
        this.settle(head, e); // the caller sees the sink's own error
        this.destroy(err instanceof Pop3ClientError ? err : new Pop3ClosedError(e.message, { cause: err }));
      },
    );
  }

  /** Handles the status line of `head`'s reply. */
  private status(head: Pending, raw: Buffer): void {
    if (head.kind.type === 'sink' && !this.debug && isPlainOk(raw)) {
      // The common case of a pipelined RETR run, without the string work below.
      const kind = head.kind;
      head.decoder = new DotDecoder();
      if (kind.batch.error) return; // a failed run: read the body, drop it
      kind.batch.sink.begin?.(kind.index);
      return;
    }
    const line = raw.toString('utf8');
    this.debug?.('S', line);
    const ok = /^\+OK(?: |$)/i.test(line);
    const err = /^-ERR(?: |$)/i.test(line);
    if (head.kind.type === 'sasl' && !ok && line.startsWith('+')) {
      // RFC 5034 §4: "+" SP base64 (or a bare "+" from lenient servers) asks for the next client response.
      const challenge = line.slice(1).trimStart();
      const { onChallenge } = head.kind;
      onChallenge(challenge).then(
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
          this.settle(head, e instanceof Error ? e : new Error(String(e)));
        },
      );
      return;
    }
    if (!ok && !err) throw new Pop3ProtocolError(`${head.verb}: unexpected reply ${JSON.stringify(clip(raw))}`);
    const text = line.slice(ok ? 3 : 4).replace(/^ /, '');
    if (err) {
      const split = splitRespCode(text);
      this.complete(head, new Pop3ResponseError(head.verb, split.text, split.respCode));
      return;
    }
    const kind = head.kind;
    switch (kind.type) {
      case 'single':
      case 'sasl':
      case 'each':
        this.complete(head, null, { text });
        return;
      case 'sink':
        head.decoder = new DotDecoder();
        if (!kind.batch.error) kind.batch.sink.begin?.(kind.index);
        return;
      case 'lines':
        head.decoder = new DotDecoder();
        head.resolve = wrapLines(head.resolve, text, kind.lines);
        return;
      case 'stream': {
        head.decoder = new DotDecoder();
        const stream = new MessageStream({
          resume: () => this.resumeForStream(),
          abandon: () => {
            kind.abandoned = true;
            this.resumeForStream();
          },
        });
        kind.stream = stream;
        this.settle(head, null, stream);
        return;
      }
    }
  }

  /** Decoded body bytes for `head`. */
  private body(head: Pending, data: Buffer): void {
    if (data.length === 0) return;
    const kind = head.kind;
    if (kind.type === 'lines') {
      kind.reader.push(this.reused ? Buffer.from(data) : data);
      for (let r = kind.reader.next(); r !== null; r = kind.reader.next()) {
        if (r.kind === 'toolong') throw new Pop3ProtocolError(`${head.verb}: listing line too long`);
        kind.lines.push(r.line.toString('utf8'));
      }
    } else if (kind.type === 'sink') {
      if (!kind.batch.error) kind.batch.sink.data(data, kind.index);
    } else if (kind.type === 'stream' && !kind.abandoned && kind.stream) {
      // push() copies nothing; `data` may be a view of the socket's chunk, which Node never reuses, unless the
      // transport reuses its one read buffer: then the consumer gets a copy.
      if (!kind.stream.push(this.reused ? Buffer.from(data) : data) && !this.pausedForStream) {
        this.pausedForStream = true;
        this.socket.pause();
      }
    }
  }

  private finishBody(head: Pending): void {
    const kind = head.kind;
    if (kind.type === 'lines') {
      if (kind.reader.buffered > 0) kind.lines.push(kind.reader.takeRest().toString('utf8'));
      this.complete(head, null);
    } else if (kind.type === 'stream') {
      if (kind.stream) {
        kind.stream.complete = true;
        if (!kind.abandoned) kind.stream.push(null);
      }
      this.resumeForStream();
      this.complete(head, null);
    } else if (kind.type === 'sink') {
      const r = kind.batch.error ? undefined : kind.batch.sink.end(kind.index);
      if (!r) {
        this.complete(head, null);
        return;
      }
      // The reply is complete, but the command is settled only when the sink is done with it.
      this.inflight.shift();
      this.block(r, head);
    }
  }

  private resumeForStream(): void {
    if (!this.pausedForStream) return;
    this.pausedForStream = false;
    if (!this.failure) this.socket.resume();
    this.armTimer();
  }

  /** The reply of the head command is complete: drop it, settle it, send what waited for it. */
  private complete(head: Pending, err: Error | null, value?: unknown): void {
    this.inflight.shift();
    this.settle(head, err, value);
    this.pump();
  }

  private settle(p: Pending, err: Error | null, value?: unknown): void {
    if (p.settled) return;
    p.settled = true;
    if (err) p.reject(err);
    else p.resolve(value);
  }

  private fail(err: Pop3ClientError): void {
    if (this.failure) return;
    this.failure = err;
    this.clearTimer();
    for (const p of [...this.inflight, ...this.queue]) {
      if (p.kind.type === 'stream' && p.kind.stream && !p.kind.stream.complete) {
        p.kind.stream.complete = true;
        p.kind.stream.destroy(err);
      }
      this.settle(p, err);
    }
    this.inflight.length = 0;
    this.queue.length = 0;
    for (const f of this.feeders.splice(0)) f.batch.reject(err);
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

/** "+OK", "+OK " or "+OK …" in any case (RFC 1939 §3: the status indicators are upper case; be lenient). */
function isPlainOk(raw: Buffer): boolean {
  return (
    raw.length >= 3 &&
    raw[0] === 0x2b &&
    (raw[1] | 0x20) === 0x6f &&
    (raw[2] | 0x20) === 0x6b &&
    (raw.length === 3 || raw[3] === 0x20)
  );
}

function wrapLines(resolve: (v: unknown) => void, text: string, lines: string[]) {
  return () => resolve({ text, lines });
}

function clip(b: Buffer): string {
  return b.subarray(0, 80).toString('latin1');
}

export { Pop3ResponseError };
