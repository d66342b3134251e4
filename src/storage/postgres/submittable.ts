/**
 * What the binary COPY objects (copy-read.ts, copy-write.ts) share: the binary COPY format's framing and the
 * parts of a `pg` submittable (the interface pg-cursor and pg-copy-streams implement: `pool.query(obj)` hands
 * it the connection and feeds it the server's messages) that neither needs to vary.
 */
import type { Connection } from 'pg';

/** "PGCOPY\n\377\r\n\0": the first 11 octets of binary COPY data. */
export const COPY_SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** The binary COPY header: the signature, flags (0), header extension length (0). */
export const COPY_HEADER = Buffer.concat([COPY_SIGNATURE, Buffer.alloc(8)]);
/** The binary COPY trailer: a field count of -1. */
export const COPY_TRAILER = Buffer.from([0xff, 0xff]);

/** The connection methods of `pg` a submittable calls, not in its type declarations. */
export type RawConnection = {
  query(text: string): void;
  sendCopyFail(msg: string): void;
  endCopyFrom(): void;
};

export function raw(connection: Connection): RawConnection {
  return connection as unknown as RawConnection;
}

/** A submittable that resolves once, with `T`, at ReadyForQuery or the first error. */
export abstract class Submittable<T> {
  callback: ((err: Error | null, result?: T) => void) | undefined;
  private done = false;

  /** Called by pg when the connection is ours. */
  abstract submit(connection: Connection): void;

  /** True once the callback has been called. */
  protected get finished(): boolean {
    return this.done;
  }

  protected finish(err: Error | null, result?: T): void {
    if (this.done) return;
    this.done = true;
    const cb = this.callback;
    if (err) cb?.(err);
    else cb?.(null, result);
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(_msg: { fields: (string | null)[] }): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}
  handleCopyData(_msg: { chunk: Buffer }): void {}
  handleCopyInResponse(_connection: Connection): void {}
}
