import type { X509Certificate } from 'node:crypto';
import type { SecureContext } from 'node:tls';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/passwd.ts';
import type { BearerVerifier } from '../auth/sasl/jwt.ts';
import type { MailStore } from '../storage/types.ts';
import type { Coordinator } from './coordinator.ts';

import type { Limits, Policy } from './options.ts';

export type { Limits, Policy } from './options.ts';

/** What every session shares, given as is by whoever builds the server (ServerOptions). */
export interface SessionSettings {
  readonly store: MailStore;
  readonly authenticator: Authenticator;
  readonly logger: Logger;
  readonly limits: Limits;
  readonly hostname: string;
  readonly greeting: string;
  readonly implementation: boolean;
  readonly allowPlaintextAuth: boolean;
  readonly loopbackIsSecure: boolean;
}

/** What the server holds of each open session. */
export interface SessionHandle {
  readonly remoteAddress: string;
  /** Server shutdown: tell the client and close; nothing is deleted. */
  shutdown(): void;
}

/** Observers of what sessions do (metrics). */
export interface ServerHooks {
  onCommand?(verb: string, result: 'ok' | 'error' | 'unknown'): void;
  onLogin?(mechanism: string, result: 'ok' | 'fail'): void;
  /** A session started (after the TLS handshake on implicit-TLS ports). */
  onSessionStart?(): void;
  /** A session ended, with its logout summary. */
  onSessionEnd?(summary: { durationMs: number; bytes: number; retrieved: number; deleted: number }): void;
}

/** What a session needs from its server and listener; built for each connection from the current TLS state. */
export interface ServerContext extends SessionSettings, ServerHooks {
  /** Present when TLS is configured; used for STLS on this listener when `stlsEnabled`. */
  readonly secureContext: SecureContext | undefined;
  readonly sniCallback?: (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void) => void;
  /** When client certificates are requested: the subject field that names the user (SASL EXTERNAL). */
  readonly clientCertUser: 'CN' | 'emailAddress' | undefined;
  /** The CA that client certificates must be issued by. */
  readonly clientCa: X509Certificate | undefined;
  readonly stlsEnabled: boolean;
  /** SASL mechanisms the operator enabled (each still offered only where it can work). */
  readonly saslMechanisms: readonly string[];
  /** OAUTHBEARER/XOAUTH2 token check, when configured. */
  readonly bearer: BearerVerifier | undefined;
  /** Offer APOP (to users with a shared secret). */
  readonly apop: boolean;
  /** Key for SCRAM's made-up salts of unknown users; the same in every worker. */
  readonly scramFakeSaltKey: Buffer;
  /** Iterations announced for unknown SCRAM users: the count real users' keys have (auth.scram_iterations). */
  readonly scramIterations: number;
  /** RFC 2449 LOGIN-DELAY and EXPIRE defaults (users may override them). */
  readonly policy: Policy;
  readonly coordinator: Coordinator;
  onClose(session: SessionHandle): void;
}
