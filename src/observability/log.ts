import { writeSync } from 'node:fs';
import { type DestinationStream, type Logger, pino } from 'pino';

/**
 * Structured logs: one JSON object per line on stdout (pino). Fields used throughout: `session`, `remote`,
 * `user`, `msg`. Passwords and SASL payloads are never logged; `redact` is a second line of defence in case
 * a future change passes a command line or credentials object by mistake.
 */
export function createLogger(level = 'info', destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { pid: process.pid },
      redact: { paths: ['password', 'pass', 'secret', '*.password', 'line', 'payload'], censor: '[redacted]' },
    },
    destination ?? new TurnBatchedDestination(pino.destination({ fd: 1, sync: false })),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });

/** What TurnBatchedDestination needs of pino's asynchronous file destination (SonicBoom). */
export interface AsyncLineSink {
  /** The file descriptor once open (SonicBoom has it; its type declarations do not). */
  readonly fd?: number;
  write(data: string): boolean;
  flush(cb?: (err?: Error) => void): void;
  flushSync(): void;
}

/**
 * The log lines of one event-loop turn, handed to the asynchronous destination together from setImmediate,
 * that is after the turn's replies were written to their sockets.
 *
 * Written one line at a time, each `login` and `disconnect` line of a short session was one write through
 * libuv's thread pool, started before the reply it logs was written: on a server pinned to one core the pool
 * thread woke up and ran first, and a CPU profile of one-connection sessions showed the log writes as the
 * largest item of ours (8 % of the wall time, 2 per session). Now a turn's lines are one write, started after
 * the replies; nothing is held longer than the turn, and lines still pending at exit are written synchronously.
 */
export class TurnBatchedDestination implements DestinationStream {
  private pending: string[] = [];
  private scheduled = false;
  /** Writes handed to the sink (one per turn with lines): for tests and the bench. */
  batches = 0;

  constructor(private readonly sink: AsyncLineSink) {
    process.once('exit', () => this.flushSync());
  }

  write(line: string): void {
    this.pending.push(line);
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.writeTurn);
    }
  }

  private readonly writeTurn = (): void => {
    this.scheduled = false;
    if (this.pending.length === 0) return;
    const data = this.pending.length === 1 ? this.pending[0] : this.pending.join('');
    this.pending = [];
    this.batches++;
    this.sink.write(data);
  };

  /** pino's logger.flush(): what is pending goes to the sink now. */
  flush(cb?: (err?: Error) => void): void {
    this.writeTurn();
    this.sink.flush(cb);
  }

  /** At exit: what the sink holds, then the pending lines, written synchronously (no event loop is left). */
  flushSync(): void {
    const data = this.pending.join('');
    this.pending = [];
    try {
      this.sink.flushSync();
      const fd = this.sink.fd;
      if (data.length > 0 && fd !== undefined && fd >= 0) writeSync(fd, data);
    } catch {
      // Not open yet or already closed: nothing more can be written.
    }
  }
}
