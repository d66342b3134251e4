/**
 * Reads the bytea values of a one-column query as raw bytes with `COPY (…) TO STDOUT (FORMAT binary)`.
 *
 * Why not a plain query: `pg` returns bytea as hex text, decoded into a JavaScript string of twice the size
 * and then into a Buffer, and gathers each protocol message into one buffer grown by doubling. For bodies
 * that is about five octets allocated per octet served; here the octets arrive as CopyData messages (one per
 * row, sliced from the driver's buffer) and are copied out once. The query returns slices of a chunk (see
 * maildrop.ts), so no message is larger than a slice.
 *
 * The object is a `pg` submittable (what pg-cursor and pg-copy-streams are): `pool.query(new CopyRead(sql))`
 * resolves with the values in order. COPY takes no parameters: callers inline only checked literals.
 */
import type { Connection } from 'pg';

/** "PGCOPY\n\377\r\n\0", then flags (int32) and the header extension's length (int32). */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

export class CopyRead {
  callback: ((err: Error | null, rows?: Buffer[]) => void) | undefined;
  private readonly rows: Buffer[] = [];
  private headerSeen = false;
  private failed: Error | undefined;
  private done = false;

  constructor(private readonly query: string) {}

  /** Called by pg when the connection is ours. */
  submit(connection: Connection): void {
    (connection as unknown as { query(text: string): void }).query(`copy (${this.query}) to stdout (format binary)`);
  }

  handleCopyData(msg: { chunk: Buffer }): void {
    if (this.failed) return;
    try {
      this.parse(msg.chunk);
    } catch (e) {
      this.failed = e as Error;
    }
  }

  private parse(b: Buffer): void {
    let p = 0;
    if (!this.headerSeen) {
      if (b.length < 19 || !b.subarray(0, 11).equals(SIGNATURE)) throw new Error('COPY: not a binary COPY header');
      p = 19 + b.readInt32BE(15);
      this.headerSeen = true;
    }
    while (p < b.length) {
      if (p + 2 > b.length) throw new Error('COPY: a row split across messages');
      const fields = b.readInt16BE(p);
      p += 2;
      if (fields === -1) return; // the trailer
      if (fields !== 1) throw new Error(`COPY: ${fields} columns, expected 1`);
      if (p + 4 > b.length) throw new Error('COPY: a row split across messages');
      const len = b.readInt32BE(p);
      p += 4;
      if (len < 0) throw new Error('COPY: null value');
      if (p + len > b.length) throw new Error('COPY: a row split across messages');
      // The driver reuses its buffer: copy the octets out now.
      this.rows.push(Buffer.from(b.subarray(p, p + len)));
      p += len;
    }
  }

  handleError(err: Error): void {
    this.finish(err);
  }

  handleReadyForQuery(): void {
    this.finish(this.failed ?? null);
  }

  handleCopyInResponse(connection: Connection): void {
    (connection as unknown as { sendCopyFail(msg: string): void }).sendCopyFail('not a COPY FROM');
  }

  handleCommandComplete(): void {}
  handleRowDescription(): void {}
  handleDataRow(): void {}
  handleEmptyQuery(): void {}
  handlePortalSuspended(): void {}

  private finish(err: Error | null): void {
    if (this.done) return;
    this.done = true;
    const cb = this.callback;
    if (err) cb?.(err);
    else cb?.(null, this.rows);
  }
}
