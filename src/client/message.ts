/**
 * The body of a RETR or TOP reply as a Node Readable of Buffers: dot-unstuffed, byte-exact (no string decoding,
 * CRLF kept as the server sent it), and async-iterable like every Readable. Memory stays bounded: when the
 * consumer falls behind, the connection stops reading the socket (see Connection).
 */
import { Readable } from 'node:stream';

/** Callbacks from the stream to the connection that feeds it. */
export interface MessageSource {
  /** The consumer wants more: resume reading the socket. */
  resume(): void;
  /** The consumer gave up early (destroy(), or `break` in for-await): the rest of the body is read and dropped. */
  abandon(): void;
}

/** High-water mark of a message stream; the socket is paused once this much is buffered. */
export const MESSAGE_HIGH_WATER_MARK = 64 * 1024;

export class MessageStream extends Readable {
  /** Set by the connection once the terminator has been seen. */
  complete = false;
  private readonly source: MessageSource;

  constructor(source: MessageSource, highWaterMark = MESSAGE_HIGH_WATER_MARK) {
    super({ highWaterMark });
    this.source = source;
  }

  override _read(): void {
    this.source.resume();
  }

  override _destroy(err: Error | null, callback: (error?: Error | null) => void): void {
    if (!this.complete) this.source.abandon();
    callback(err);
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
}
