/**
 * A message body staged before the delivery transaction starts, so that a slow sender never pins a database
 * connection (or holds a transaction open) while its message trickles in. Up to `memoryLimit` octets stay in
 * memory (most mail: one chunk, no file); a larger body goes to an unlinked temporary file (created 0600 in
 * the temp directory and removed from it at once, so a crash leaves nothing behind) and is read back one
 * chunk at a time into one reused buffer. Memory stays at about one chunk whatever the message size.
 */
import { randomUUID } from 'node:crypto';
import { type FileHandle, open, unlink } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SizeCounter } from '../../mail/size.ts';

export class Spool {
  /** Octets as stored. */
  rawSize = 0;
  /** Octets as transmitted (CRLF line endings), known once filled. */
  size = 0;
  private memory: Buffer[] = [];
  private file: FileHandle | undefined;

  private constructor(private readonly memoryLimit: number) {}

  /** Reads `source` to its end. Throws what the source throws (and whatever writing the file throws). */
  static async fill(source: AsyncIterable<unknown>, memoryLimit: number, dir = tmpdir()): Promise<Spool> {
    const spool = new Spool(memoryLimit);
    const counter = new SizeCounter();
    try {
      for await (const chunk of source) {
        const buf =
          typeof chunk === 'string'
            ? Buffer.from(chunk, 'utf8')
            : Buffer.from((chunk as Uint8Array).buffer, (chunk as Uint8Array).byteOffset, (chunk as Uint8Array).length);
        if (buf.length === 0) continue;
        counter.update(buf);
        await spool.add(buf, dir);
      }
    } catch (e) {
      await spool.close();
      throw e;
    }
    spool.size = counter.digest();
    return spool;
  }

  private async add(buf: Buffer, dir: string): Promise<void> {
    this.rawSize += buf.length;
    if (this.file === undefined && this.rawSize <= this.memoryLimit) {
      // The source may reuse its buffer after yielding it: keep a copy (at most memoryLimit octets).
      this.memory.push(Buffer.from(buf));
      return;
    }
    if (this.file === undefined) {
      const path = join(dir, `postern-spool-${randomUUID()}`);
      this.file = await open(path, 'wx+', 0o600);
      await unlink(path);
      for (const b of this.memory) await this.writeAll(b);
      this.memory = [];
    }
    await this.writeAll(buf);
  }

  private async writeAll(buf: Buffer): Promise<void> {
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await (this.file as FileHandle).write(buf, off, buf.length - off);
      off += bytesWritten;
    }
  }

  /** True when the body went to the file (it is larger than the memory limit). */
  get inFile(): boolean {
    return this.file !== undefined;
  }

  /**
   * The body in pieces of `size` octets (the last one shorter). From a file, every piece is the same buffer,
   * refilled: use it before asking for the next one.
   */
  async *chunks(size: number): AsyncGenerator<Buffer> {
    if (this.file === undefined) {
      const all = this.memory.length === 1 ? this.memory[0] : Buffer.concat(this.memory);
      for (let off = 0; off < all.length; off += size) yield all.subarray(off, off + size);
      return;
    }
    const buf = Buffer.allocUnsafe(Math.min(size, this.rawSize));
    for (let pos = 0; pos < this.rawSize; ) {
      const got = await this.read(buf, pos, Math.min(buf.length, this.rawSize - pos));
      pos += got;
      yield buf.subarray(0, got);
    }
  }

  /** Fills `buf[0, length)` with the octets at `pos` of a body in the file; returns `length`. */
  async read(buf: Buffer, pos: number, length: number): Promise<number> {
    if (this.file === undefined) throw new Error('the body is not in a spool file');
    let got = 0;
    while (got < length) {
      const { bytesRead } = await this.file.read(buf, got, length - got, pos + got);
      if (bytesRead === 0) throw new Error('spool file shorter than what was written');
      got += bytesRead;
    }
    return got;
  }

  async close(): Promise<void> {
    this.memory = [];
    const f = this.file;
    this.file = undefined;
    await f?.close().catch(() => {});
  }
}
