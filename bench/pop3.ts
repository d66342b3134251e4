/**
 * A minimal raw POP3 client for the load generator: one TCP socket, a queue of expected replies, and a parser
 * that works on whole chunks (Buffer.indexOf for the status line end and for the "\r\n.\r\n" terminator). It
 * only counts reply bytes and, when asked, lines; it never keeps message bodies, so it can take a server's full
 * speed. Commands can be pipelined: several lines in one write, answered in order.
 *
 * Deliberately independent of src/client (which is in flux) and of the servers under test.
 */
import { createHash } from 'node:crypto';
import { connect, type Socket } from 'node:net';

export interface Reply {
  readonly ok: boolean;
  /** The status line without CRLF. */
  readonly line: string;
  /** Bytes of a multi-line body as sent (terminator ".\r\n" excluded, the CRLF before it included). */
  readonly bytes: number;
  /** Line feeds in the body, when counted. */
  readonly lines: number;
}

interface Pending {
  readonly multi: boolean;
  readonly countLines: boolean;
  resolve(r: Reply): void;
  reject(e: Error): void;
}

const EMPTY = Buffer.alloc(0);
const LF = 0x0a;
const TERMINATOR = Buffer.from('\r\n.\r\n', 'latin1');
/** Stands for the CRLF that ends the status line, so an empty body (".\r\n" right away) is found as well. */
const BODY_PREFIX = Buffer.from('\r\n', 'latin1');
const MAX_STATUS_LINE = 4096;

/**
 * Every connection of the process reads into this one buffer (node:net's `onread`): up to 1 MiB per read system
 * call, and no buffer allocated per read. Safe to share because each read is handled synchronously before the
 * next one; nothing keeps a view of it (the status line pieces and the terminator's tail are copied). With
 * Node's default 64 KiB reads, each a new buffer, the load generator cost 0.7-0.9 ms per MB received on this
 * machine, close to the server's own cost: it would have measured itself.
 */
const READ_BUFFER = Buffer.allocUnsafe(1 << 20);

export class Pop3Conn {
  private readonly queue: Pending[] = [];
  private status: Buffer[] = [];
  private statusLen = 0;
  /** Set while a multi-line body is being received. */
  private body: { line: string; consumed: number; tail: Buffer; lines: number; countLines: boolean } | null = null;
  private failed: Error | null = null;
  private closedResolve: (() => void) | null = null;
  readonly closed: Promise<void>;
  /** The greeting line, once connected. */
  greeting = '';

  private constructor(private readonly socket: Socket) {
    this.closed = new Promise((r) => {
      this.closedResolve = r;
    });
    socket.setNoDelay(true);
    socket.on('error', (e) => this.fail(e));
    socket.on('close', () => {
      this.fail(new Error('connection closed'));
      this.closedResolve?.();
    });
  }

  /** Connects and waits for the greeting (bounded by timeoutMs). */
  static async open(host: string, port: number, timeoutMs = 30_000): Promise<Pop3Conn> {
    let conn: Pop3Conn | undefined;
    const socket = connect({
      host,
      port,
      onread: {
        buffer: READ_BUFFER,
        callback: (n: number, buf: Uint8Array) => {
          conn?.onData(buf.subarray(0, n));
          return true;
        },
      },
    });
    conn = new Pop3Conn(socket);
    const timer = setTimeout(() => socket.destroy(new Error('greeting timeout')), timeoutMs);
    try {
      const g = await conn.expect(false);
      if (!g.ok) throw new Error(`greeting: ${g.line}`);
      conn.greeting = g.line;
      return conn;
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends one command and waits for its reply. */
  cmd(line: string, multi = false, countLines = false): Promise<Reply> {
    const r = this.expect(multi, countLines);
    this.socket.write(`${line}\r\n`);
    return r;
  }

  /** Sends several commands in one write; resolves with their replies in order. */
  pipeline(lines: readonly string[], multi: boolean, countLines = false): Promise<Reply[]> {
    const rs = lines.map(() => this.expect(multi, countLines));
    this.socket.write(`${lines.join('\r\n')}\r\n`);
    return Promise.all(rs);
  }

  /** Logs in with USER/PASS or APOP (the secret is the stored {PLAIN} password). Throws on -ERR. */
  async login(user: string, password: string, mechanism: 'pass' | 'apop'): Promise<Reply> {
    if (mechanism === 'apop') {
      const m = /<[^>]*>/.exec(this.greeting);
      if (!m) throw new Error(`no APOP timestamp in greeting: ${this.greeting}`);
      const digest = createHash('md5')
        .update(m[0] + password)
        .digest('hex');
      const r = await this.cmd(`APOP ${user} ${digest}`);
      if (!r.ok) throw new Error(`APOP ${user}: ${r.line}`);
      return r;
    }
    // One command at a time, as most clients do.
    const u = await this.cmd(`USER ${user}`);
    if (!u.ok) throw new Error(`USER ${user}: ${u.line}`);
    const p = await this.cmd(`PASS ${password}`);
    if (!p.ok) throw new Error(`PASS ${user}: ${p.line}`);
    return p;
  }

  /** QUIT, then wait for the server to close (bounded). */
  async quit(timeoutMs = 10_000): Promise<Reply> {
    const r = await this.cmd('QUIT');
    this.socket.end();
    const timer = setTimeout(() => this.socket.destroy(), timeoutMs);
    await this.closed;
    clearTimeout(timer);
    return r;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private expect(multi: boolean, countLines = false): Promise<Reply> {
    if (this.failed) return Promise.reject(this.failed);
    return new Promise((resolve, reject) => this.queue.push({ multi, countLines, resolve, reject }));
  }

  private fail(e: Error): void {
    if (this.failed) return;
    this.failed = e;
    for (const p of this.queue.splice(0)) p.reject(e);
  }

  private onData(chunk: Uint8Array): void {
    let c = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
    while (c.length > 0) {
      if (this.queue.length === 0) {
        this.fail(new Error(`unexpected data from server: ${c.subarray(0, 80).toString('latin1')}`));
        this.socket.destroy();
        return;
      }
      c = this.body ? this.onBody(c) : this.onStatus(c);
    }
  }

  /** Collects the status line; returns the bytes after it. */
  private onStatus(c: Buffer): Buffer {
    const lf = c.indexOf(LF);
    if (lf === -1) {
      this.status.push(Buffer.from(c)); // a copy: c is a view of the shared read buffer
      this.statusLen += c.length;
      if (this.statusLen > MAX_STATUS_LINE) {
        this.fail(new Error('status line too long'));
        this.socket.destroy();
      }
      return EMPTY;
    }
    this.status.push(c.subarray(0, lf + 1));
    const raw = Buffer.concat(this.status).toString('latin1');
    this.status = [];
    this.statusLen = 0;
    const line = raw.replace(/\r?\n$/, '');
    const ok = line.startsWith('+OK');
    const p = this.queue[0];
    if (p.multi && ok) {
      this.body = { line, consumed: 0, tail: BODY_PREFIX, lines: 0, countLines: p.countLines };
    } else {
      this.queue.shift();
      p.resolve({ ok, line, bytes: 0, lines: 0 });
    }
    return c.subarray(lf + 1);
  }

  /** Counts body bytes up to the terminator; returns the bytes after it (or nothing). */
  private onBody(c: Buffer): Buffer {
    const b = this.body!;
    // Terminator start as an offset in the body stream (the CRLF of the status line sits at -2 and -1).
    let start = -1;
    const head = Buffer.concat([b.tail, c.subarray(0, TERMINATOR.length - 1)]);
    const p = head.indexOf(TERMINATOR);
    if (p !== -1 && p < b.tail.length) start = b.consumed - b.tail.length + p;
    else {
      const q = c.indexOf(TERMINATOR);
      if (q !== -1) start = b.consumed + q;
    }
    if (start === -1) {
      if (b.countLines) b.lines += countLf(c, 0, c.length);
      b.consumed += c.length;
      b.tail =
        c.length >= TERMINATOR.length - 1
          ? Buffer.from(c.subarray(c.length - (TERMINATOR.length - 1)))
          : Buffer.concat([b.tail, c]).subarray(-(TERMINATOR.length - 1));
      return EMPTY;
    }
    const bodyLen = start + 2; // the CRLF before ".\r\n" ends the last line of the body
    const endInChunk = start + TERMINATOR.length - b.consumed;
    if (b.countLines) b.lines += countLf(c, 0, Math.max(0, bodyLen - b.consumed));
    this.body = null;
    const pending = this.queue.shift()!;
    pending.resolve({ ok: true, line: b.line, bytes: Math.max(0, bodyLen), lines: b.lines });
    return c.subarray(endInChunk);
  }
}

function countLf(buf: Buffer, from: number, to: number): number {
  let n = 0;
  let i = buf.indexOf(LF, from);
  while (i !== -1 && i < to) {
    n++;
    i = buf.indexOf(LF, i + 1);
  }
  return n;
}
