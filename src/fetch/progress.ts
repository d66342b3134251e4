/**
 * What `postern fetch` tells the user: a one-line progress bar on a terminal (messages, bytes, rate), one
 * plain line per message otherwise (logs, cron mail), nothing but errors with --quiet; a summary per account.
 */
export interface AccountResult {
  account: string;
  /** Messages on the server when listed; undefined when the run failed before listing. */
  onServer: number | undefined;
  fetched: number;
  fetchedBytes: number;
  skipped: number;
  deleted: number;
  elapsedMs: number;
  dryRun: boolean;
  /** --check: a status run (nothing downloaded). */
  check?: boolean;
  /** How far the run got: where a failure happened. */
  stage?: 'state' | 'connect' | 'login' | 'list' | 'fetch' | 'quit' | 'done';
  error?: string;
  /** The client error code of the failure, when it was a POP3 client error. */
  errorCode?: string;
}

export interface Progress {
  start(account: string, count: number, bytes: number): void;
  message(account: string, info: { number: number; uidl: string; size: number }): void;
  /** Bytes of the message being downloaded, as they arrive. */
  bytes?(account: string, n: number): void;
  skipped(account: string, info: { number: number; uidl: string; size: number }, reason: string): void;
  /** Dry run: one message that would be fetched. */
  wouldFetch(account: string, info: { number: number; uidl: string; size: number }): void;
  finish(result: AccountResult): void;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** A hint for errors a user can act on. */
function hint(r: AccountResult): string {
  if (r.errorCode === 'POP3_ERR_TLS') {
    return ' (look at the certificate with `postern fetch --probe HOST:PORT`, then trust it with --ca-file or accept exactly it with --pin-sha256)';
  }
  return '';
}

export function summary(r: AccountResult): string {
  const secs = (r.elapsedMs / 1000).toFixed(1);
  // A failure before anything was listed: say what failed, not "0 left on server".
  if (r.error && r.onServer === undefined) {
    const what =
      r.stage === 'connect'
        ? 'could not connect'
        : r.stage === 'login'
          ? 'login failed'
          : r.stage === 'state'
            ? 'could not open the local state or mailbox'
            : 'failed';
    return `${r.account}: ${what}: ${r.error}${hint(r)}`;
  }
  if (r.check) {
    return `${r.account}: ${r.fetched} new message${r.fetched === 1 ? '' : 's'} (${formatBytes(r.fetchedBytes)})${r.skipped ? `, ${r.skipped} too large` : ''}, ${r.onServer} on server${r.error ? ` — FAILED: ${r.error}` : ''}`;
  }
  if (r.dryRun) {
    return `${r.account}: dry run: ${r.fetched} would be fetched (${formatBytes(r.fetchedBytes)}), ${r.skipped} skipped, ${r.deleted} would be deleted, ${r.onServer} on server`;
  }
  const parts = [
    `${r.fetched} fetched (${formatBytes(r.fetchedBytes)})`,
    ...(r.skipped ? [`${r.skipped} skipped`] : []),
    `${r.deleted} deleted`,
    `${(r.onServer ?? 0) - r.deleted} left on server`,
  ];
  return `${r.account}: ${parts.join(', ')} in ${secs}s${r.error ? ` — FAILED: ${r.error}${hint(r)}` : ''}`;
}

type Out = { write(s: string): unknown };

/** --quiet: errors only (to stderr). */
export class QuietProgress implements Progress {
  constructor(private readonly stderr: Out) {}
  start(): void {}
  message(): void {}
  skipped(): void {}
  wouldFetch(): void {}
  finish(r: AccountResult): void {
    if (r.error) this.stderr.write(`${summary(r)}\n`);
  }
}

/** Not a terminal: plain lines, one per event. */
export class LineProgress implements Progress {
  private done = 0;
  private total = 0;
  constructor(
    private readonly out: Out,
    private readonly stderr: Out,
  ) {}
  start(account: string, count: number, bytes: number): void {
    this.done = 0;
    this.total = count;
    this.out.write(`${account}: ${count} new message${count === 1 ? '' : 's'} (${formatBytes(bytes)})\n`);
  }
  message(account: string, m: { number: number; uidl: string; size: number }): void {
    this.done++;
    this.out.write(`${account}: fetched ${this.done}/${this.total}: #${m.number} ${m.uidl} (${formatBytes(m.size)})\n`);
  }
  skipped(account: string, m: { number: number; uidl: string; size: number }, reason: string): void {
    this.out.write(`${account}: skipped #${m.number} ${m.uidl} (${formatBytes(m.size)}): ${reason}\n`);
  }
  wouldFetch(account: string, m: { number: number; uidl: string; size: number }): void {
    this.out.write(`${account}: would fetch #${m.number} ${m.uidl} (${formatBytes(m.size)})\n`);
  }
  finish(r: AccountResult): void {
    (r.error ? this.stderr : this.out).write(`${summary(r)}\n`);
  }
}

/** A terminal: one line redrawn at most 10 times a second. */
export class TtyProgress implements Progress {
  private account = '';
  private count = 0;
  private totalBytes = 0;
  private done = 0;
  private doneBytes = 0;
  /** Sizes of the messages completed; doneBytes adds what has arrived of the current one. */
  private finishedBytes = 0;
  private started = 0;
  private lastDraw = 0;
  private drawn = false;

  constructor(
    private readonly out: Out,
    private readonly columns: () => number = () => 80,
  ) {}

  start(account: string, count: number, bytes: number): void {
    this.account = account;
    this.count = count;
    this.totalBytes = bytes;
    this.done = 0;
    this.doneBytes = 0;
    this.finishedBytes = 0;
    this.started = Date.now();
    this.draw(true);
  }

  message(_account: string, m: { size: number }): void {
    this.done++;
    this.finishedBytes += m.size;
    this.doneBytes = this.finishedBytes;
    this.draw(this.done === this.count);
  }

  /** Within a large message: the bar moves as its bytes arrive (redrawn at most 10 times a second). */
  bytes(_account: string, n: number): void {
    this.doneBytes += n;
    this.draw(false);
  }

  skipped(account: string, m: { number: number; uidl: string; size: number }, reason: string): void {
    this.clear();
    this.out.write(`${account}: skipped #${m.number} ${m.uidl} (${formatBytes(m.size)}): ${reason}\n`);
    this.draw(true);
  }

  wouldFetch(account: string, m: { number: number; uidl: string; size: number }): void {
    this.out.write(`${account}: would fetch #${m.number} ${m.uidl} (${formatBytes(m.size)})\n`);
  }

  finish(r: AccountResult): void {
    this.clear();
    this.out.write(`${summary(r)}\n`);
  }

  private clear(): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
  }

  private draw(force: boolean): void {
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const secs = Math.max((now - this.started) / 1000, 0.001);
    const rate = this.doneBytes / secs;
    const text = `${this.account}: ${this.done}/${this.count} messages, ${formatBytes(this.doneBytes)}/${formatBytes(this.totalBytes)}, ${formatBytes(Math.round(rate))}/s`;
    const width = Math.max(10, Math.min(40, this.columns() - text.length - 4));
    const frac = this.totalBytes > 0 ? this.doneBytes / this.totalBytes : this.count > 0 ? this.done / this.count : 1;
    const fill = Math.round(Math.min(1, frac) * width);
    this.out.write(`\r\x1b[2K[${'#'.repeat(fill)}${'.'.repeat(width - fill)}] ${text}`);
    this.drawn = true;
  }
}
