/** The client's options and the values its commands return (re-exported by client.ts and index.ts). */
import type { Duplex } from 'node:stream';
import type { ConnectionOptions as TlsConnectionOptions } from 'node:tls';
import type { AuthOptions } from './auth.ts';
import type { DebugFn } from './pipeline.ts';

export type TlsMode = 'implicit' | 'starttls' | 'none';

export interface ConnectOptions {
  host: string;
  /** Default: 995 for implicit TLS, 110 otherwise. */
  port?: number;
  /** 'implicit' (RFC 8314, port 995), 'starttls' (STLS on 110, RFC 2595), or 'none' (cleartext, explicit only). */
  tls: TlsMode;
  /** Log in as part of connect(). Without it the client stays in AUTHORIZATION; call login() yourself. */
  auth?: AuthOptions;
  /** Allow mechanisms that send the password or token itself (USER, PLAIN, LOGIN, OAuth) without TLS. */
  allowInsecureAuth?: boolean;
  /** Bound on connecting, the TLS handshake, and each wait for server bytes. Default 60 s. */
  timeoutMs?: number;
  /** Aborting closes the connection at once, without QUIT (nothing is deleted), and fails what is pending. */
  signal?: AbortSignal;
  /** Extra options for tls.connect (ca, cert, key, minVersion…). Verification stays on unless you turn it off here. */
  tlsOptions?: TlsConnectionOptions;
  /** Accept exactly these certificates (SHA-256 of the DER, hex, colons optional) instead of CA verification. */
  pinSha256?: string | readonly string[];
  /**
   * Commands in flight when the server advertises PIPELINING (RFC 2449 §6.6). true (default) = 16, false = off.
   * Servers that do not advertise it always get one command at a time.
   */
  pipelining?: boolean | number;
  /** Send UTF8 (RFC 6856) before logging in when the server advertises it. */
  utf8?: boolean;
  /** Gets every protocol line (C = client, S = server). Passwords, digests and SASL payloads are redacted. */
  debug?: DebugFn;
  /** An already-connected transport instead of host/port (tests, proxies). TLS, when asked for, runs over it. */
  socket?: Duplex;
}

export interface StatResult {
  count: number;
  size: number;
}
export interface ListEntry {
  number: number;
  size: number;
}
export interface UidlEntry {
  number: number;
  uidl: string;
}
export interface MessageInfo {
  number: number;
  uidl: string;
  size: number;
}
