/** What bench/run.ts asks bench/load.ts to do (one job per load process), and what comes back. */

export type Mechanism = 'pass' | 'apop';

export interface Target {
  readonly host: string;
  readonly port: number;
}

/** Connect, log in, STAT, QUIT, in a loop on `concurrency` connections (worker i logs in as users[i]). */
export interface SessionsJob {
  readonly kind: 'sessions';
  readonly target: Target;
  readonly users: readonly string[];
  readonly password: string;
  readonly mechanism: Mechanism;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly maxSessions: number;
}
export interface SessionsResult {
  readonly sessions: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly perSec: number;
}

/** RETR on one connection, `batch` commands per write (1 = one at a time), over messages 1..messages. */
export interface RetrJob {
  readonly kind: 'retr';
  readonly target: Target;
  readonly user: string;
  readonly password: string;
  readonly mechanism: Mechanism;
  readonly messages: number;
  readonly batch: number;
  readonly warmup: number;
  readonly maxRetr: number;
  readonly durationMs: number;
}
export interface RetrResult {
  readonly retrieved: number;
  readonly bytes: number;
  readonly seconds: number;
  readonly msgsPerSec: number;
  readonly mbPerSec: number;
  /** Replies whose body length differed from the octet count announced in "+OK n octets". */
  readonly sizeMismatches: number;
}

/** `logins` sessions one after another: USER/PASS, STAT, LIST, UIDL, QUIT, each timed. */
export interface ListingJob {
  readonly kind: 'listing';
  readonly target: Target;
  readonly user: string;
  readonly password: string;
  readonly mechanism: Mechanism;
  readonly logins: number;
  readonly expectMessages: number;
}
export interface ListingTiming {
  readonly loginMs: number;
  readonly statMs: number;
  readonly listMs: number;
  readonly uidlMs: number;
  readonly totalMs: number;
  readonly statLine: string;
  readonly listLines: number;
  readonly uidlLines: number;
}
export interface ListingResult {
  readonly sessions: readonly ListingTiming[];
  /** Logins answered -ERR [IN-USE] (the previous session's lock not yet released) and tried again. */
  readonly inUseRetries: number;
}

/**
 * Opens one logged-in connection per user (at most `openConcurrency` logins in flight), prints a line
 * `{"ready":…}`, waits for a line on stdin, then QUITs them all and prints the result.
 */
export interface IdleJob {
  readonly kind: 'idle';
  readonly target: Target;
  readonly users: readonly string[];
  readonly password: string;
  readonly mechanism: Mechanism;
  readonly openConcurrency: number;
  readonly openTimeoutMs: number;
}
export interface IdleReady {
  readonly ready: true;
  readonly opened: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly seconds: number;
}
export interface IdleResult {
  readonly closed: number;
}

export type Job = SessionsJob | RetrJob | ListingJob | IdleJob;
