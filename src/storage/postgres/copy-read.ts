/**
 * Reads the bytea values of a one-column query as raw bytes with `COPY (…) TO STDOUT (FORMAT binary)`.
 *
 * Why not a plain query: `pg` returns bytea as hex text, decoded into a JavaScript string of twice the size
 * and then into a Buffer, and gathers each protocol message into one buffer grown by doubling. For bodies
 * that is about five octets allocated per octet served; here the octets arrive as CopyData messages (one per
 * row, sliced from the driver's buffer) and are copied out once. The query returns slices of a chunk (see
 * maildrop.ts), so no message is larger than a slice.
 *
 * The object is a `pg` submittable (submittable.ts): `pool.query(new CopyRead(sql))` resolves with the values
 * in order. COPY takes no parameters: callers inline only checked literals.
 */
import type { Connection } from 'pg';
import { COPY_SIGNATURE, raw, Submittable } from './submittable.ts';

export class CopyRead extends Submittable<Buffer[]> {
  private readonly rows: Buffer[] = [];
  private headerSeen = false;
  private failed: Error | undefined;

  constructor(private readonly query: string) {
    super();
  }

  submit(connection: Connection): void {
    raw(connection).query(`copy (${this.query}) to stdout (format binary)`);
  }

  override handleCopyData(msg: { chunk: Buffer }): void {
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
      // The signature, then flags (int32) and the header extension's length (int32).
      if (b.length < 19 || !b.subarray(0, 11).equals(COPY_SIGNATURE)) throw new Error('COPY: not a binary COPY header');
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
    this.finish(this.failed ?? null, this.rows);
  }

  override handleCopyInResponse(connection: Connection): void {
    raw(connection).sendCopyFail('not a COPY FROM');
  }
}
