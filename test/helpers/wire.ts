/**
 * A raw POP3 wire for transcript tests: exact bytes out, exact bytes in, every wait bounded.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';

const WAIT_MS = 10_000;

export class Wire {
  private buf = Buffer.alloc(0);
  private waiters: (() => void)[] = [];
  ended = false;

  private constructor(public socket: Socket | TLSSocket) {
    this.listen(socket);
  }

  private listen(socket: Socket | TLSSocket): void {
    socket.on('data', (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('end', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  static connect(port: number, opts: { tls?: boolean; tlsOptions?: ConnectionOptions } = {}): Promise<Wire> {
    return new Promise((resolve, reject) => {
      const s = opts.tls
        ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false, ...opts.tlsOptions })
        : netConnect({ port, host: '127.0.0.1' });
      s.once(opts.tls ? 'secureConnect' : 'connect', () => resolve(new Wire(s)));
      s.once('error', reject);
    });
  }

  /** Waits until `pred(buffer)` returns the number of bytes to take (or -1 to keep waiting). */
  private async take(pred: (b: Buffer) => number, what: string, waitMs = WAIT_MS): Promise<Buffer> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const n = pred(this.buf);
      if (n >= 0) {
        const out = this.buf.subarray(0, n);
        this.buf = this.buf.subarray(n);
        return out;
      }
      if (this.ended)
        throw new Error(
          `connection closed while waiting for ${what}; have ${JSON.stringify(this.buf.toString('latin1'))}`,
        );
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`timeout waiting for ${what}; have ${JSON.stringify(this.buf.toString('latin1'))}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  async line(waitMs?: number): Promise<string> {
    const b = await this.take(
      (b) => {
        const i = b.indexOf('\r\n');
        return i < 0 ? -1 : i + 2;
      },
      'a line',
      waitMs,
    );
    return b.subarray(0, b.length - 2).toString('utf8');
  }

  /** The raw bytes of a multi-line body after its status line, up to and including "\r\n.\r\n". */
  async body(): Promise<Buffer> {
    return this.take((b) => {
      if (b.subarray(0, 3).equals(Buffer.from('.\r\n'))) return 3;
      const i = b.indexOf('\r\n.\r\n');
      return i < 0 ? -1 : i + 5;
    }, 'a multi-line body');
  }

  /** Lines of a multi-line body, unstuffed, without the terminator. */
  async lines(): Promise<string[]> {
    const raw = (await this.body()).toString('utf8');
    const ls = raw.split('\r\n');
    ls.splice(-2); // '.' and ''
    return ls.map((l) => (l.startsWith('.') ? l.slice(1) : l));
  }

  send(text: string | Buffer): void {
    this.socket.write(text);
  }

  async cmd(line: string): Promise<string> {
    this.send(`${line}\r\n`);
    return this.line();
  }

  /** Resolves once the server has closed the connection (bounded). */
  async closed(waitMs = WAIT_MS): Promise<void> {
    await this.take((b) => (this.ended ? b.length : -1), 'close', waitMs);
  }

  /** Anything received so far, without waiting. */
  pending(): string {
    return this.buf.toString('latin1');
  }

  /** Upgrades this connection after a +OK to STLS. */
  async startTls(): Promise<void> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    const tls = tlsConnect({ socket: plain, rejectUnauthorized: false, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => {
      tls.once('secureConnect', () => resolve());
      tls.once('error', reject);
    });
    this.socket = tls;
    this.listen(tls);
  }

  destroy(): void {
    this.socket.destroy();
  }
}
