/**
 * What the POP3 server is configured with, in its own terms: limits, the RFC 2449 policy, listeners. The
 * configuration file (config/) maps onto these types; the server never reads the configuration itself.
 * Every limit has its reason beside it: an RFC where one sets a floor, an attack it bounds otherwise.
 */

/** Every SASL mechanism the server implements (RFC 5034), in the order CAPA lists them. */
export const SERVER_SASL_MECHANISMS: readonly string[] = [
  'EXTERNAL',
  'SCRAM-SHA-256',
  'PLAIN',
  'LOGIN',
  'CRAM-MD5',
  'OAUTHBEARER',
  'XOAUTH2',
];

/** RFC 2449 §4: a command line is at most 255 octets including the CRLF; never accept less. */
export const MIN_LINE_LENGTH = 255;
/** RFC 5034 §4: SASL continuation lines are not bound by the command limit; OAuth tokens alone are kilobytes. */
export const MIN_AUTH_LINE_LENGTH = 16_384;
/** RFC 1939 §3: an autologout timer, once logged in, must be at least 10 minutes. */
export const MIN_IDLE_TIMEOUT_MS = 600_000;

export interface Limits {
  /** Longest command line in octets (at least MIN_LINE_LENGTH); a longer one is answered -ERR. */
  readonly maxLineLength: number;
  /** Longest SASL continuation line in octets (at least MIN_AUTH_LINE_LENGTH). */
  readonly maxAuthLineLength: number;
  /** Inactivity before login after which the connection is closed: bounds idle connections from anyone. */
  readonly idleTimeoutAuthMs: number;
  /** Inactivity after login (at least MIN_IDLE_TIMEOUT_MS). */
  readonly idleTimeoutMs: number;
  /** Bad or unknown commands in a row before the connection is closed (Dovecot: 20). */
  readonly maxBadCommands: number;
  /** Concurrent connections per process: bounds memory and file descriptors. */
  readonly maxConnections: number;
  /** Concurrent connections from one client address: one client cannot take them all. */
  readonly maxConnectionsPerAddress: number;
  /** Failed logins on one connection before it is closed: slows password guessing. */
  readonly maxAuthFailures: number;
  /** Delay before answering a failed login, doubled per recent failure from the address (design.md §8). */
  readonly failedLoginDelayMs: number;
  /** Cap on that delay. */
  readonly failedLoginMaxDelayMs: number;
  /** Time sessions get to finish (reach QUIT) on shutdown before they are closed with -ERR [SYS/TEMP]. */
  readonly shutdownGraceMs: number;
  /** TLS handshake time allowed, the same after STLS and on implicit-TLS listeners: bounds half-open handshakes. */
  readonly tlsHandshakeTimeoutMs: number;
}

/** RFC 2449 §6.5 LOGIN-DELAY and §6.7 EXPIRE: the server-wide defaults, which users may override. */
export interface Policy {
  /** Minimum seconds between two logins of one user; 0 for none (then not advertised). */
  readonly loginDelaySeconds: number;
  /** Days a message is kept after its first retrieval, or never. */
  readonly expireDays: number | 'never';
}

/** Plain POP3 with STLS (RFC 2595), POP3S (RFC 8314 implicit TLS), or no TLS at all. */
export type ListenerTls = 'starttls' | 'implicit' | 'none';

export interface ListenerConfig {
  readonly address: string;
  readonly port: number;
  readonly tls: ListenerTls;
  /** Expect a PROXY protocol header first (only from `proxy.trusted`). */
  readonly proxyProtocol?: boolean;
}
