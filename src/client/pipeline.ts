/**
 * The command side of a Connection (RFC 2449 §6.6 PIPELINING): commands wait in `queue`; up to `window` of them
 * are written ahead of their replies and sit in `inflight`, oldest first. Replies arrive in order, so the head of
 * `inflight` owns the next bytes. A window of 1 is the plain RFC 1939 one-at-a-time dialogue. Commands that change
 * the session's state or the transport (STLS, AUTH, USER, PASS, APOP, QUIT) are barriers: written only when
 * nothing else is in flight, and nothing is written after them until their reply is complete.
 *
 * A many() run (RETR or DELE of many messages) is a Feeder: its commands are made as the window drains, not all
 * at once, and all of them settle through the two functions of one SinkBatch.
 */
import type { MessageStream } from './message.ts';

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
  /**
   * true: each CRLF of a body is handed over as LF (a CR not followed by LF stays, as data): the stored form of a
   * Maildir or an mbox, made in the same pass as the dot-unstuffing (in WebAssembly where available) rather than
   * by a second pass over the bytes. Read when a body starts.
   */
  readonly crlfToLf?: boolean;
  /** The +OK for message `index` came; its body follows. */
  begin?(index: number): void;
  data(chunk: Buffer, index: number): void;
  end(index: number): void | Promise<void>;
}

/** The shared state of one Connection.many() call. */
export interface SinkBatch {
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
export type ReplyKind =
  | { type: 'single' }
  /**
   * A listing: the decoded bytes kept in `parts` and split into lines at the end (one string decode, not a
   * Buffer and a string per line); `tail`: bytes of the current line so far, `cr`: the last byte was a CR.
   */
  | { type: 'lines'; lines: string[]; parts: Buffer[]; tail: number; cr: boolean }
  | { type: 'stream'; stream?: MessageStream }
  | { type: 'sasl'; onChallenge: (challenge: string) => Promise<string> }
  | { type: 'sink'; batch: SinkBatch; index: number }
  | { type: 'each'; batch: SinkBatch };

export interface Pending {
  verb: string;
  /** The line to write, CRLF included (written as UTF-8); null for the greeting (nothing to send). */
  wire: string | null;
  /** What the debug hook sees instead of `wire` (passwords and SASL payloads replaced). */
  debugText: string;
  barrier: boolean;
  kind: ReplyKind;
  resolve(value: unknown): void;
  reject(err: Error): void;
  /** Reading the body of a positive multi-line reply. */
  decoder?: BodyDecoder;
  settled: boolean;
}

/** DotDecoder, or LfDecoder for a sink that wants CRLF → LF. */
export interface BodyDecoder {
  push(chunk: Buffer): { data: Buffer; done: boolean; rest: Buffer };
}

/** Settles a command once: later calls (a failure after its reply) do nothing. */
export function settle(p: Pending, err: Error | null, value?: unknown): void {
  if (p.settled) return;
  p.settled = true;
  if (err) p.reject(err);
  else p.resolve(value);
}

const NO_SINK: RetrieveSink = { data() {}, end() {} };

export class CommandPipeline {
  /** Not yet written. */
  readonly queue: Pending[] = [];
  /** Written, reply not complete; the head owns the next bytes from the server. */
  readonly inflight: Pending[] = [];
  private readonly feeders: Feeder[] = [];
  private window = 1;

  /** Replies not yet complete plus commands not yet sent. */
  get pending(): number {
    let fed = 0;
    for (const f of this.feeders) fed += f.args.length - f.next;
    return this.inflight.length + this.queue.length + fed;
  }

  setWindow(window: number): void {
    this.window = Math.max(1, Math.floor(window));
  }

  /** Queues one command; the promise settles with its reply. A CR or LF in `line` rejects it, unsent. */
  add(verb: string, line: string | null, debugText: string, barrier: boolean, kind: ReplyKind): Promise<unknown> {
    return new Promise((resolve, reject) => {
      if (line !== null && /[\r\n]/.test(line)) {
        // A CR or LF in an argument would smuggle a second command onto the wire.
        reject(new TypeError(`${verb}: arguments must not contain CR or LF`));
        return;
      }
      this.queue.push({
        verb,
        wire: line === null ? null : `${line}\r\n`,
        debugText,
        barrier,
        kind,
        resolve,
        reject,
        settled: false,
      });
    });
  }

  /**
   * Starts a many() run: its commands join the queue as the window drains. The promise resolves when every reply
   * is in and rejects with the first failure; `args` with a CR or LF reject it before anything is queued.
   */
  run(verb: string, args: readonly string[], sink: RetrieveSink | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
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
        sink: sink ?? NO_SINK,
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
      // A run over 100 000 messages holds a window's worth of commands, and the replies are settled by two
      // functions shared by the whole run.
      this.feeders.push({ verb, args, next: 0, batch, sink: sink !== undefined });
    });
  }

  /** Moves commands of many() runs into the queue, as much as the window can use. */
  feed(): void {
    while (this.feeders.length > 0 && this.queue.length < this.window) {
      const f = this.feeders[0];
      const i = f.next++;
      if (f.next === f.args.length) this.feeders.shift();
      const line = `${f.verb} ${f.args[i]}`;
      this.queue.push({
        verb: f.verb,
        wire: `${line}\r\n`,
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
   * Once the window is full it is refilled only when half of it has been answered, so a long pipelined run costs
   * a write per half window, not one per command.
   */
  get holding(): boolean {
    const busy = this.inflight.length;
    return busy > 1 && busy > this.window >> 1 && this.queue.length > 0 && !this.queue[0].barrier;
  }

  /**
   * Moves the queued commands that the window and the barriers allow in flight, and returns their lines as one
   * string, written at once (undefined when there is nothing to write). Strings, not a Buffer per command: the
   * socket encodes them in one go (a Buffer.from per RETR showed in the profile of a first pass).
   */
  take(debug: DebugFn | undefined): string | undefined {
    let wire: string | undefined;
    let taken = 0;
    const queue = this.queue;
    while (taken < queue.length) {
      const next = queue[taken];
      const busy = this.inflight.length;
      if (busy > 0 && (next.barrier || this.inflight[busy - 1].barrier || busy >= this.window)) break;
      taken++;
      this.inflight.push(next);
      if (next.wire) {
        debug?.('C', next.debugText);
        wire = wire === undefined ? next.wire : wire + next.wire;
      }
    }
    if (taken > 0) queue.splice(0, taken);
    if (this.feeders.length > 0 && queue.length < this.window) {
      // Top the queue up for the next refill.
      this.feed();
    }
    return wire;
  }

  /** Fails every command in flight, queued or not yet made, with `err`; message streams are destroyed. */
  failAll(err: Error): void {
    for (const p of [...this.inflight, ...this.queue]) {
      if (p.kind.type === 'stream' && p.kind.stream && !p.kind.stream.complete) {
        p.kind.stream.complete = true;
        p.kind.stream.destroy(err);
      }
      settle(p, err);
    }
    this.inflight.length = 0;
    this.queue.length = 0;
    for (const f of this.feeders.splice(0)) f.batch.reject(err);
  }
}
