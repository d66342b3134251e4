/** What bench/run.ts asks bench/load.ts to do (one job per load process), and what comes back. */

export type Mechanism = 'pass' | 'apop';

export interface Target {
  readonly host: string;
  readonly port: number;
}

/**
 * Connect, log in, STAT, [RETR 1..retr], QUIT, in a loop on `concurrency` connections. Connection i logs in as
 * users i, i + C, i + 2C, … in turn, so no two connections ever share a user (Postern locks the maildrop).
 */
export interface SessionsJob {
  readonly kind: 'sessions';
  readonly target: Target;
  readonly users: readonly string[];
  readonly password: string;
  readonly mechanism: Mechanism;
  readonly concurrency: number;
  readonly durationMs: number;
  readonly maxSessions: number;
  /** RETRs per session, of messages 1..retr (0: none). */
  readonly retr?: number;
  /** Send the session's RETRs in one write instead of one at a time. */
  readonly pipelined?: boolean;
  /** Each user logs in exactly once (a first login); the job ends when every user has. */
  readonly onceEach?: boolean;
  /** Log every user in once before the clock starts (the timed logins are then repeated logins). */
  readonly warmupEachUser?: boolean;
}
export interface SessionsResult {
  readonly sessions: number;
  /** Messages retrieved in all sessions. */
  readonly messages: number;
  readonly errors: number;
  readonly firstError?: string;
  readonly seconds: number;
  readonly perSec: number;
  /** CPU time (user + system) the load generator spent per session in the timed loop, in µs. */
  readonly loadCpuUsPerSession?: number;
}

/**
 * RETR in one long session per user, all users at once (one connection each), `batch` commands per write
 * (1 = one at a time), over messages 1..messages. Rates are totals over all connections.
 */
export interface RetrJob {
  readonly kind: 'retr';
  readonly target: Target;
  readonly users: readonly string[];
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
  /** Body bytes of the untimed warm-up RETRs. */
  readonly warmupBytes: number;
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
  /**
   * Cumulative connection counts (the last one is users.length): the generator stops after each, prints a
   * `ready` line and waits for a line on stdin before the next stage (run.ts reads the server's memory then).
   */
  readonly stages: readonly number[];
}
export interface IdleReady {
  readonly ready: true;
  /** Index in IdleJob.stages. */
  readonly stage: number;
  readonly opened: number;
  readonly failed: number;
  readonly firstError?: string;
  readonly seconds: number;
}
export interface IdleResult {
  readonly closed: number;
}

export type Job = SessionsJob | RetrJob | ListingJob | IdleJob;
