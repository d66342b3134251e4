/**
 * Writes rows with `COPY … FROM STDIN (FORMAT binary)`, the octets going from the caller's buffers straight to
 * the connection's socket.
 *
 * Why not INSERT with a bytea parameter: `pg` serialises every Bind message into a buffer of its own, grown to
 * hold the parameter, so each 256 KiB chunk of a large message cost a fresh 256 KiB allocation (and a copy)
 * that lived until V8 collected it: about 16-24 MB of the server's peak memory for a 100 MB delivery (measured
 * with bench/pg-memory.ts). Here the caller fills a buffer, `send` writes a 5-octet CopyData header and the
 * buffer itself, and resolves once the socket no longer needs it, so two buffers can be reused for the whole
 * message.
 *
 * The object is a `pg` submittable (submittable.ts): `client.query(new CopyWrite(sql, produce), cb)`.
 * COPY takes no parameters; the values travel in the data.
 */
import type { Connection } from 'pg';
import { raw, Submittable } from './submittable.ts';

/** What a producer writes through. */
export interface CopyOut {
  /**
   * Sends `data` as one CopyData message. Resolves (never rejects) once the socket is done with `data`, so the
   * buffer may be refilled; check `failed` afterwards: on an error the COPY is over and nothing more is sent.
   */
  send(data: Buffer): Promise<void>;
  readonly failed: boolean;
}

type Socket = { write(b: Buffer, cb?: (err?: Error | null) => void): boolean; cork(): void; uncork(): void };

export class CopyWrite extends Submittable<undefined> implements CopyOut {
  private connection: Connection | undefined;
  private error: Error | undefined;
  /** True from CopyInResponse until CopyDone or CopyFail went out. */
  private sending = false;

  constructor(
    private readonly sql: string,
    private readonly produce: (out: CopyOut) => Promise<void>,
  ) {
    super();
  }

  get failed(): boolean {
    return this.error !== undefined || this.finished;
  }

  submit(connection: Connection): void {
    this.connection = connection;
    raw(connection).query(this.sql);
  }

  override handleCopyInResponse(connection: Connection): void {
    this.connection = connection;
    this.sending = true;
    this.produce(this).then(
      () => this.end(),
      (e: unknown) => this.abort(e instanceof Error ? e : new Error(String(e))),
    );
  }

  send(data: Buffer): Promise<void> {
    if (this.failed || !this.sending) return Promise.resolve();
    const head = Buffer.allocUnsafe(5);
    head[0] = 0x64; // 'd'
    head.writeInt32BE(4 + data.length, 1);
    const socket = this.socket();
    return new Promise<void>((resolve) => {
      // One writev for the header and the octets, which are not copied: the socket holds `data` until sent.
      socket.cork();
      socket.write(head);
      socket.write(data, () => resolve());
      socket.uncork();
    });
  }

  private socket(): Socket {
    return (this.connection as unknown as { stream: Socket }).stream;
  }

  /** The producer finished: CopyDone; the server answers CommandComplete and ReadyForQuery (or an error). */
  private end(): void {
    if (!this.sending) return;
    this.sending = false;
    if (this.failed) return;
    if (this.connection) raw(this.connection).endCopyFrom();
  }

  /** The producer failed (e.g. reading the spool file): CopyFail, so the server ends the COPY with an error. */
  private abort(e: Error): void {
    this.error ??= e;
    this.stopSending(e.message);
  }

  private stopSending(reason: string): void {
    if (!this.sending) return;
    this.sending = false;
    // Harmless when the server has already left COPY mode (it ignores CopyFail then).
    if (this.connection) raw(this.connection).sendCopyFail(reason);
  }

  handleError(err: Error): void {
    // From the server (ErrorResponse: it has left COPY mode) or from pg (the query timed out, the connection
    // broke): stop the producer either way, and make a server still in COPY mode fail it.
    this.error ??= err;
    this.stopSending(err.message);
    this.finish(this.error);
  }

  handleReadyForQuery(): void {
    this.finish(this.error ?? null);
  }
}
