import { type Logger, pino } from 'pino';

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
    destination ?? pino.destination({ fd: 1, sync: false }),
  );
}

export const silentLogger: Logger = pino({ level: 'silent' });
