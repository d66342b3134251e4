import type { UserSettings } from './user-settings.ts';

/**
 * What the server needs from a user database (design.md §2: auth turns credentials into a verified
 * principal; storage never sees a password).
 */

/** The authenticated user: the name they logged in with and the store key of their mail. */
export interface Principal {
  readonly user: string;
  readonly mailboxId: string;
  /**
   * Per-user policy and quota from the user database (passwd-file extra fields such as `login_delay=900`,
   * `expire=30`, `quota_bytes=…`, or PostgreSQL columns), parsed where the user was read (user-settings.ts);
   * absent when the user has none. Secrets are never in here.
   */
  readonly settings?: UserSettings;
}

export interface Authenticator {
  /**
   * Verifies a plaintext password (USER/PASS, SASL PLAIN/LOGIN). Unknown user and wrong password are
   * indistinguishable in result and in timing: an unknown user still costs one argon2 verification with the
   * parameters Postern hashes with. Returns null on any failure; never throws for a bad user or password.
   */
  verifyPassword(user: string, password: string): Promise<Principal | null>;
  /**
   * The plaintext shared secret for APOP and CRAM-MD5, or null when the user has none (or does not exist,
   * or may not log in at all). Compare digests with `verifyApop` (apop.ts), never with `===`.
   */
  sharedSecret(user: string): Promise<string | null>;
  /** True when at least one user has a shared secret: advertise APOP (and CRAM-MD5) only then. */
  hasSharedSecrets(): boolean;
  /** Looks a user up without a password (delivery, admin). Null when unknown. */
  lookup(user: string): Promise<Principal | null>;
  /** SCRAM-SHA-256 keys of a user (RFC 5802), or null when the user has none; absent: no SCRAM at all. */
  scramCredentials?(user: string): Promise<import('./sasl/types.ts').ScramCredentials | null>;
  /** True when some user has a per-user policy setting (`login_delay=` or `expire=`): CAPA says "USER". */
  hasPolicyOverrides?(): boolean;
}

/** The part of a pino logger that auth uses; pass the server's logger or a child of it. */
export interface AuthLogger {
  warn(fields: Record<string, unknown>, msg: string): void;
}
