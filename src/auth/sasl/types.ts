/**
 * SASL mechanisms (RFC 4422) as small, pure state machines, one client side and one server side each,
 * shared by the POP3 server's AUTH command (RFC 5034) and the client library.
 *
 * They see raw payload bytes only. The caller owns the framing: base64, the `+ ` continuation lines, `=` for
 * an empty initial response, `*` to cancel, line limits, and the wording of `-ERR` replies. No sockets, no
 * timers, no logging here; the only I/O is what the verifier the caller passes in does.
 */
import { CodedError } from '../errors.ts';
import type { Principal } from '../types.ts';

export type { Principal } from '../types.ts';

/** Stable codes for `SaslError`, so library users can branch without parsing messages. */
export const SaslErrorCode = {
  /** The server sent a challenge this mechanism cannot accept (malformed, or out of turn). */
  BadChallenge: 'SASL_ERR_BAD_CHALLENGE',
  /** The server ended the exchange with an error of the mechanism (SCRAM `e=`, OAuth JSON error). */
  ServerError: 'SASL_ERR_SERVER_ERROR',
  /** The server claimed success without proving it knows the credentials (SCRAM server signature). */
  ServerNotVerified: 'SASL_ERR_SERVER_NOT_VERIFIED',
  /** The caller's own credentials cannot be sent with this mechanism (e.g. a NUL in a PLAIN user name). */
  BadCredentials: 'SASL_ERR_BAD_CREDENTIALS',
} as const;
export type SaslErrorCode = (typeof SaslErrorCode)[keyof typeof SaslErrorCode];

/**
 * Thrown by client sides only (built with mechanism.ts's credentialsError and challengeError). Server sides
 * never throw for bad input; they return a failure step.
 */
export class SaslError extends CodedError<SaslErrorCode> {
  override readonly name = 'SaslError';
}

export interface SaslClient {
  /** The IANA mechanism name, upper-case, as it goes in `AUTH <name>`. */
  readonly mechanism: string;
  /**
   * The initial response, or null for a server-first mechanism (LOGIN, CRAM-MD5). The caller may send it
   * inline (RFC 5034 §4: only if the whole AUTH line fits in 255 octets) or send AUTH without it: the server
   * then answers with an empty challenge, and `step(<empty>)` returns the same initial response again.
   */
  start(): Buffer | null;
  /** Given a server challenge, the next response. Throws SaslError on a challenge it cannot accept. */
  step(challenge: Buffer): Buffer;
  /**
   * Call when the server says `+OK`, with the additional data with success if the protocol carried any.
   * Throws SaslError(ServerNotVerified) when the mechanism authenticates the server (SCRAM) and the server
   * never proved itself; a client must then treat the session as not trustworthy and drop it.
   */
  finish(additionalData?: Buffer | null): void;
  /** True once the client has sent all it has to and, for SCRAM, has verified the server's signature. */
  readonly done: boolean;
}

/** A client-first mechanism (PLAIN, SCRAM, OAUTHBEARER, XOAUTH2): it always has an initial response. */
export interface ClientFirstSaslClient extends SaslClient {
  start(): Buffer;
}

export type ServerStep =
  /** Send `+ base64(data)` and pass the client's answer to `step`. */
  | { readonly kind: 'challenge'; readonly data: Buffer }
  /**
   * Authenticated. POP3 has no form for data in `+OK`: RFC 5034 sends additional data with success as one
   * last challenge. So when `data` is present (SCRAM server-final) the caller sends `+ base64(data)`, expects
   * an empty response (`*` cancels), and only then answers `+OK`. `authcid` is set when a different identity logged in as `principal` (proxy
   * authorization), for the logs.
   */
  | { readonly kind: 'success'; readonly principal: Principal; readonly data?: Buffer; readonly authcid?: string }
  /**
   * Not authenticated. `reason` is for the logs only: it never holds a secret or a payload, and is not meant
   * for the client (answer every failure alike, e.g. `-ERR [AUTH] Authentication failed`). When `challenge`
   * is present (the OAuth JSON error), send it as a challenge first, read one client answer (OAUTHBEARER
   * sends `AQ==`, XOAUTH2 an empty line; whatever it is, including `*`), then send the `-ERR`. Passing that
   * answer to `step` is optional; it returns the same failure again.
   */
  | {
      readonly kind: 'failure';
      readonly reason: string;
      readonly challenge?: Buffer;
      /** The user the client tried to log in as, when the exchange got that far: for the log line only. */
      readonly user?: string;
    };

export interface SaslServer {
  readonly mechanism: string;
  /**
   * The first call gets the initial response: null when AUTH had none, `Buffer.alloc(0)` for `=`. Later
   * calls get the client's answers to challenges. After success or failure every further call returns a
   * failure. Malformed input always resolves to a failure, never a throw; the promise rejects only when the
   * verifier itself throws (the user database is down): answer that with `-ERR [SYS/TEMP]`, not `[AUTH]`.
   */
  step(response: Buffer | null): Promise<ServerStep>;
}

/** What SCRAM-SHA-256 keeps per user instead of the password (RFC 5802 §3). */
export interface ScramCredentials {
  readonly salt: Buffer;
  readonly iterations: number;
  readonly storedKey: Buffer;
  readonly serverKey: Buffer;
}

/**
 * What the server-side mechanisms need from the user database. Each mechanism takes only the methods it
 * uses (see the `Pick`s in each factory), so a deployment without, say, bearer tokens can leave that out.
 * All of them resolve null for an unknown user and for a refused credential, alike.
 */
export interface SaslVerifier {
  /** PLAIN, LOGIN. Unknown user and wrong password must cost the same time (auth/types.ts). */
  verifyPassword(user: string, password: string): Promise<Principal | null>;
  /** CRAM-MD5: the plaintext shared secret, or null when the user has none. */
  sharedSecret(user: string): Promise<string | null>;
  /** SCRAM-SHA-256: the stored keys, or null when the user has none. */
  scramCredentials(user: string): Promise<ScramCredentials | null>;
  /** OAUTHBEARER, XOAUTH2: the token's user, who must equal `user` when the client named one. */
  verifyBearer(token: string, user: string | undefined): Promise<Principal | null>;
  /** The principal of a user known to exist (after SCRAM/CRAM-MD5 proofs, and for proxy authorization). */
  lookup(user: string): Promise<Principal | null>;
}

/**
 * May `authenticated` act as the user `authzid` (RFC 4422 §3.4.1)? Only consulted when the client asks for
 * an authorization identity different from its own; without this hook that is always refused.
 */
export type ProxyAuthorization = (authenticated: Principal, authzid: string) => boolean | Promise<boolean>;
