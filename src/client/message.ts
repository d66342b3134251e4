/**
 * The body of a RETR or TOP reply as a Node Readable of Buffers: dot-unstuffed, byte-exact (no string decoding,
 * CRLF kept as the server sent it), and async-iterable like every Readable. Memory stays bounded: when the
 * consumer falls behind, the connection stops reading the socket (see Connection).
 *
 * Two ways to be read. Until a consumer comes, the connection's chunks wait in a small queue of our own. A
 * consumer of the Readable kind (`on('data')`, `pipe`, `read()`…) makes the stream a plain Readable: the queue is
 * pushed into it and every later chunk too. `for await` (and bytes()/text()) taken first reads the queue directly
 * instead, through an iterator without the Readable machinery (a 'readable' listener, end-of-stream watchers, an
 * async generator per message), which is most of what a small message costs; it behaves as Node's does: chunks in
 * order, the error of a failed connection thrown, `break` destroys the stream (the rest is read and dropped).
 *
 * Node's Readable state itself is made only when something uses the stream as a Readable: a property of Readable
 * (`destroyed`, `readableEnded`…), a listener, `pipe`, `destroy()`. A stream read only by `for await` never
 * builds it, so reading a message to its end costs neither Readable's constructor nor its destroy() (a 'close'
 * event scheduled on the next tick, for a stream no one listens to): in a fresh process those two were about a
 * fifth of what retrieve() cost per message. Once built, the stream is exactly what it would have been: closed
 * if it was read to its end, failed if its connection failed.
 */
import { Readable, type ReadableOptions } from 'node:stream';

/** Callbacks from the stream to the connection that feeds it. */
export interface MessageSource {
  /** The consumer wants more: resume reading the socket. */
  resume(): void;
  /** The consumer gave up early (destroy(), or `break` in for-await): the rest of the body is read and dropped. */
  abandon(): void;
  /**
   * Bytes waiting in the queues of all the connection's message streams not being read yet (one object per
   * connection): bodies that came before anyone reads them stop the socket at MESSAGE_QUEUE_LIMIT in all, so a
   * pipelined run of many retrieve() calls never holds more than that, however small each message.
   */
  readonly waiting: { bytes: number };
}

/** High-water mark of a message stream; the socket is paused once this much is buffered. */
export const MESSAGE_HIGH_WATER_MARK = 64 * 1024;
/** At most this much waits in the queues of a connection's streams together (see MessageSource.waiting). */
export const MESSAGE_QUEUE_LIMIT = 1024 * 1024;

const NOT_CHOSEN = 0;
const READABLE = 1;
const ITERATOR = 2;

const EMPTY = Buffer.alloc(0);
/** The queue of every stream that holds no chunk (never pushed to: a first chunk gets an array of its own). */
const NO_CHUNKS: readonly Buffer[] = Object.freeze([]);
const DONE: IteratorResult<Buffer> = Object.freeze({ value: undefined, done: true });

function ignore(): void {}

/** Node's Readable constructor (a plain function in Node's sources), run on a MessageStream when it is needed. */
const readableInit = Readable as unknown as (this: Readable, options: ReadableOptions) => void;

/**
 * The base of MessageStream: Readable's prototype without Readable's constructor (see the file's comment). What
 * the constructor makes, `_readableState`, is made by the accessor below on first use.
 */
function LazyReadable(): void {}
LazyReadable.prototype = Object.create(Readable.prototype, {
  constructor: { value: LazyReadable, writable: true, configurable: true },
});
Object.setPrototypeOf(LazyReadable, Readable);

export class MessageStream
  extends (LazyReadable as unknown as typeof Readable)
  implements AsyncIterableIterator<Buffer>
{
  /** Set by the connection once the terminator has been seen. */
  complete = false;
  /** Destroyed before its end: the connection reads the rest of the body and drops it. */
  abandoned = false;
  private readonly source: MessageSource;
  private mode = NOT_CHOSEN;
  /** Chunks not yet handed to a consumer (NOT_CHOSEN and ITERATOR modes). */
  private queue: readonly Buffer[] | Buffer[] = NO_CHUNKS;
  private head = 0;
  private queued = 0;
  /** The last chunk came (NOT_CHOSEN and ITERATOR modes). */
  private ended = false;
  /** The iterator's next() waits for a chunk, the end or a failure. */
  private waiter: ((result: IteratorResult<Buffer>) => void) | undefined;
  private waiterFail: ((err: Error) => void) | undefined;
  private readonly hwm: number;
  /** Readable's state has been made (see the file's comment). */
  private built = false;
  /** Read to its end before Readable's state was made: once made, the stream is destroyed at once. */
  private closedUnbuilt = false;

  static {
    // Bytes waiting for the consumer, whichever queue holds them (a getter of Readable's, hence not `override`).
    const readable = Object.getOwnPropertyDescriptor(Readable.prototype, 'readableLength')?.get;
    Object.defineProperty(MessageStream.prototype, 'readableLength', {
      get(this: MessageStream): number {
        return this.mode === READABLE ? (readable?.call(this) ?? 0) : this.queued;
      },
    });
    // Readable's constructor assigns `_readableState`; every method and property of Readable reads it.
    Object.defineProperty(MessageStream.prototype, '_readableState', {
      configurable: true,
      get(this: MessageStream): unknown {
        this.build();
        return Object.getOwnPropertyDescriptor(this, '_readableState')?.value;
      },
      set(this: MessageStream, state: unknown) {
        Object.defineProperty(this, '_readableState', { value: state, writable: true, configurable: true });
      },
    });
  }

  constructor(source: MessageSource, highWaterMark = MESSAGE_HIGH_WATER_MARK) {
    super();
    this.source = source;
    this.hwm = highWaterMark;
  }

  /** Makes Readable's state, as Readable's constructor would have, then catches up with what already happened. */
  private build(): void {
    if (this.built) return;
    this.built = true;
    readableInit.call(this, { highWaterMark: this.hwm });
    // The failure reaches an iterating consumer through next(); the 'error' event must not go unhandled meanwhile.
    if (this.mode === ITERATOR) this.on('error', ignore);
    if (this.closedUnbuilt) this.endAndClose(false);
  }

  /**
   * The iterator read the whole body: the stream is left as Node's own iterator leaves a Readable read to its
   * end, ended ('end' emitted, `readableEnded`) and destroyed, so `finished()` afterwards resolves instead of
   * reporting a premature close. The chunks went through our queue, not Readable's buffer, so its end is marked
   * in its state (`ended`, `endEmitted`: setters Node keeps public for this).
   */
  private endAndClose(emitEnd: boolean): void {
    const state = Object.getOwnPropertyDescriptor(this, '_readableState')?.value as
      | { ended: boolean; endEmitted: boolean }
      | undefined;
    if (state) {
      state.ended = true;
      state.endEmitted = true;
    }
    if (emitEnd) this.emit('end');
    this.destroy();
  }

  /** Destroyed, or read to its end without Readable's state (the same to the iterator). */
  private get over(): boolean {
    return this.built ? this.destroyed : this.closedUnbuilt;
  }

  /** A chunk of the body, from the connection. False: the consumer is behind, stop reading the socket. */
  deliver(chunk: Buffer): boolean {
    if (this.mode === READABLE) return this.push(chunk);
    if (this.waiter && this.head === this.queue.length) {
      this.wakeWith({ value: chunk, done: false });
      return true;
    }
    // Most bodies come in one chunk: an array of one, not an empty array grown by push().
    if (this.queue.length === 0) this.queue = [chunk];
    else (this.queue as Buffer[]).push(chunk);
    this.queued += chunk.length;
    const waiting = this.source.waiting;
    waiting.bytes += chunk.length;
    return this.queued < this.hwm && waiting.bytes < MESSAGE_QUEUE_LIMIT;
  }

  /** The body's end, from the connection. */
  finish(): void {
    this.complete = true;
    if (this.mode === READABLE) {
      this.push(null);
      return;
    }
    this.ended = true;
    if (this.waiter && this.head === this.queue.length) this.wakeWith({ value: undefined, done: true });
  }

  override _read(): void {
    if (this.mode === NOT_CHOSEN) {
      this.mode = READABLE;
      const queue = this.queue;
      for (let i = this.head; i < queue.length; i++) this.push(queue[i]);
      this.dropQueue();
      if (this.ended) this.push(null);
    }
    this.source.resume();
  }

  /** Empties the queue (its bytes handed to the Readable, or dropped). */
  private dropQueue(): void {
    this.source.waiting.bytes -= this.queued;
    this.queue = NO_CHUNKS;
    this.head = 0;
    this.queued = 0;
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    this.dropQueue();
    if (!this.complete) {
      this.abandoned = true;
      this.source.abandon();
    }
    const wake = this.waiter;
    const fail = this.waiterFail;
    this.waiter = undefined;
    this.waiterFail = undefined;
    if (err) fail?.(err);
    else wake?.(DONE);
    callback(err);
  }

  override [Symbol.asyncIterator](): AsyncIterableIterator<Buffer> {
    if (this.mode !== NOT_CHOSEN) return super[Symbol.asyncIterator]();
    this.mode = ITERATOR;
    // As in build(): the failure reaches the consumer through next().
    if (this.built) this.on('error', ignore);
    return this;
  }

  next(): Promise<IteratorResult<Buffer>> {
    if (this.over) {
      // As Node's iterator: nothing more after a destroy; the error, if there was one.
      const failure = this.built ? this.errored : null;
      return failure ? Promise.reject(failure) : Promise.resolve(DONE);
    }
    if (this.head < this.queue.length) {
      const queue = this.queue as Buffer[];
      const chunk = queue[this.head];
      queue[this.head++] = EMPTY;
      this.queued -= chunk.length;
      this.source.waiting.bytes -= chunk.length;
      if (this.head === queue.length) {
        this.queue = NO_CHUNKS;
        this.head = 0;
      }
      if (this.queued < this.hwm && this.source.waiting.bytes < MESSAGE_QUEUE_LIMIT) {
        this.source.resume();
      }
      return Promise.resolve({ value: chunk, done: false });
    }
    if (this.ended) return Promise.resolve(this.finished());
    this.source.resume();
    return new Promise((resolve, reject) => {
      this.waiter = resolve;
      this.waiterFail = reject;
    });
  }

  /** `break` or a throw in the loop: the rest of the body is read and dropped (as Node's destroyOnReturn does). */
  return(): Promise<IteratorResult<Buffer>> {
    if (!this.over) this.destroy();
    return Promise.resolve(DONE);
  }

  /** The whole body as one Buffer (reads the stream to its end). */
  async bytes(): Promise<Buffer> {
    const chunks: Buffer[] = [];
    for await (const chunk of this) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  }

  /** The whole body decoded as text (UTF-8 by default; 'latin1' keeps every byte as one char). */
  async text(encoding: BufferEncoding = 'utf8'): Promise<string> {
    return (await this.bytes()).toString(encoding);
  }

  private wakeWith(result: IteratorResult<Buffer>): void {
    const wake = this.waiter;
    this.waiter = undefined;
    this.waiterFail = undefined;
    if (result.done) this.finished();
    wake?.(result);
  }

  /** The iterator read the whole body (see endAndClose; without Readable's state, that waits until it is made). */
  private finished(): IteratorResult<Buffer> {
    if (!this.built) this.closedUnbuilt = true;
    else if (!this.destroyed) this.endAndClose(true);
    return DONE;
  }
}
