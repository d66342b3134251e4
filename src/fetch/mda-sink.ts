/** `postern fetch` through an external command (MDA), one message per run (see fetch/deliver.ts). */
import { closeSync, openSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { uniqueHex, writeAllSync } from '../durable/files.ts';
import { CrlfToLfWriter } from '../mail/transforms.ts';
import type { Delivery, DeliveryMeta, Intent } from './deliver.ts';

/** Numbers the spool files of this process. */
let seq = 0;

/** An MDA that takes longer than this is killed and the delivery fails. */
const MDA_TIMEOUT_MS = 10 * 60_000;

/**
 * Each message is spooled to a private file (bounded memory whatever its size), then the command runs with the
 * file as its stdin; end() resolves on exit status 0.
 */
export class MdaDelivery implements Delivery {
  readonly maxGroup = 1;
  private fd = -1;
  private spool = '';
  private meta: DeliveryMeta | undefined;
  private delivered = 0;
  private readonly writer = new CrlfToLfWriter((b) => writeAllSync(this.fd, b));

  constructor(
    readonly target: { kind: 'mda'; command: string },
    private readonly spoolDir = process.env.TMPDIR || '/tmp',
  ) {}

  describe(): string {
    return `MDA ${this.target.command}`;
  }

  async prepare(): Promise<void> {}

  reserve(n: number): Intent[] {
    return Array.from({ length: n }, () => ({}));
  }

  begin(_intent: Intent, meta: DeliveryMeta): void {
    this.meta = meta;
    // Unique as durable/files.ts's temporary names are (pid, monotonic time, serial); opened 'wx', so a name
    // taken by anyone else fails rather than being written over.
    this.spool = join(this.spoolDir, `postern-fetch-${process.pid}-${++seq}-${uniqueHex(12)}`);
    this.fd = openSync(this.spool, 'wx', 0o600);
  }

  write(chunk: Buffer): void {
    this.writer.pushStored(chunk);
  }

  async end(): Promise<void> {
    this.writer.end();
    const meta = this.meta;
    let input = -1;
    try {
      input = openSync(this.spool, 'r');
      // Loaded when an MDA runs, not at start-up: node:child_process brings dgram, net… (2-3 ms of every fetch).
      const { spawn } = await import('node:child_process');
      const child = spawn('/bin/sh', ['-c', this.target.command], {
        stdio: [input, 'ignore', 'pipe'],
        env: {
          ...process.env,
          POSTERN_UIDL: meta?.uidl ?? '',
          POSTERN_ACCOUNT: meta?.account ?? '',
          POSTERN_SIZE: String(meta?.size ?? 0),
        },
      });
      let stderr = '';
      child.stderr?.on('data', (d: Buffer) => {
        if (stderr.length < 4096) stderr += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), MDA_TIMEOUT_MS);
      const code = await new Promise<number | null>((resolve, reject) => {
        child.once('error', reject);
        child.once('close', (c, signal) => resolve(signal ? null : c));
      }).finally(() => clearTimeout(timer));
      if (code !== 0) {
        throw new Error(
          `MDA "${this.target.command}" failed (${code === null ? 'killed' : `exit ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`,
        );
      }
      this.delivered++;
    } finally {
      if (input !== -1) closeSync(input);
      this.discard();
    }
  }

  discard(): void {
    if (this.fd === -1) return;
    this.writer.reset();
    closeSync(this.fd);
    this.fd = -1;
    try {
      unlinkSync(this.spool);
    } catch {}
  }

  commit(): number {
    const n = this.delivered;
    this.delivered = 0;
    return n;
  }

  async recover(intents: Intent[]): Promise<boolean[]> {
    return intents.map(() => false);
  }

  async close(): Promise<void> {
    this.discard();
  }
}
