/**
 * The SASL mechanisms by name, for the POP3 server's AUTH command and the client library. Each mechanism's
 * own module has its RFC and its details; types.ts has the contracts.
 *
 * The token verifiers (jwt.ts: `createJwtBearerVerifier`, bearer-command.ts: `createCommandBearerVerifier`)
 * are server-only and are imported from their own modules, so the client library does not load `jose` or
 * `child_process` through this one.
 */
import { type CramMd5ServerOptions, createCramMd5Client, createCramMd5Server } from './cram-md5.ts';
import { createLoginClient, createLoginServer } from './login.ts';
import {
  createOAuthBearerClient,
  createOAuthBearerServer,
  createXOAuth2Client,
  createXOAuth2Server,
  type OAuthServerOptions,
} from './oauth.ts';
import { createPlainClient, createPlainServer, type PlainServerOptions } from './plain.ts';
import { createScramSha256Server, type ScramServerOptions } from './scram.ts';
import { createScramSha256Client } from './scram-client.ts';
import type { SaslClient, SaslServer, SaslVerifier } from './types.ts';

export * from './cram-md5.ts';
export * from './login.ts';
export * from './oauth.ts';
export * from './plain.ts';
export * from './saslprep.ts';
export * from './scram.ts';
export * from './scram-client.ts';
export * from './types.ts';
export { decodeSaslName, encodeSaslName } from './util.ts';

/** Every mechanism implemented, strongest first (the order to list them in CAPA and AUTH). */
export const SASL_MECHANISMS = ['SCRAM-SHA-256', 'OAUTHBEARER', 'XOAUTH2', 'PLAIN', 'LOGIN', 'CRAM-MD5'] as const;
export type SaslMechanism = (typeof SASL_MECHANISMS)[number];

export interface MechanismInfo {
  /**
   * The password or a bearer token crosses the wire as is: offer and use it only on a TLS-protected (or
   * loopback) connection (design.md §8). SCRAM and CRAM-MD5 send only proofs.
   */
  readonly sendsSecret: boolean;
  /** The verifier method it needs; a server offers the mechanism only when that source is configured. */
  readonly needs: Exclude<keyof SaslVerifier, 'lookup'>;
}

export const MECHANISM_INFO: Readonly<Record<SaslMechanism, MechanismInfo>> = {
  'SCRAM-SHA-256': { sendsSecret: false, needs: 'scramCredentials' },
  OAUTHBEARER: { sendsSecret: true, needs: 'verifyBearer' },
  XOAUTH2: { sendsSecret: true, needs: 'verifyBearer' },
  PLAIN: { sendsSecret: true, needs: 'verifyPassword' },
  LOGIN: { sendsSecret: true, needs: 'verifyPassword' },
  'CRAM-MD5': { sendsSecret: false, needs: 'sharedSecret' },
};

/** The canonical name for `name` (SASL names are matched case-insensitively on the wire), or null. */
export function saslMechanism(name: string): SaslMechanism | null {
  const upper = name.toUpperCase();
  return (SASL_MECHANISMS as readonly string[]).includes(upper) ? (upper as SaslMechanism) : null;
}

export interface SaslServerOptions
  extends PlainServerOptions,
    CramMd5ServerOptions,
    ScramServerOptions,
    OAuthServerOptions {}

/**
 * A fresh server side for one AUTH exchange, or null for a mechanism not implemented here. Which
 * mechanisms to allow on a connection (TLS, configured sources) is the caller's decision.
 */
export function createSaslServer(
  mechanism: string,
  verifier: SaslVerifier,
  options: SaslServerOptions = {},
): SaslServer | null {
  switch (saslMechanism(mechanism)) {
    case 'PLAIN':
      return createPlainServer(verifier, options);
    case 'LOGIN':
      return createLoginServer(verifier);
    case 'CRAM-MD5':
      return createCramMd5Server(verifier, options);
    case 'SCRAM-SHA-256':
      return createScramSha256Server(verifier, options);
    case 'OAUTHBEARER':
      return createOAuthBearerServer(verifier, options);
    case 'XOAUTH2':
      return createXOAuth2Server(verifier, options);
    case null:
      return null;
  }
}

export interface SaslClientCredentials {
  readonly username?: string;
  /** For PLAIN, LOGIN, SCRAM-SHA-256, and CRAM-MD5 (where it is the shared secret). */
  readonly password?: string;
  /** An OAuth access token, for OAUTHBEARER and XOAUTH2. */
  readonly token?: string;
  /** Act as this user (PLAIN, SCRAM); the server must allow it. */
  readonly authzid?: string;
  /** OAUTHBEARER's optional host and port (RFC 7628 §3.1). */
  readonly host?: string;
  readonly port?: number;
  /** SCRAM client nonce, for tests. */
  readonly nonce?: string;
}

/**
 * A fresh client side, or null when the mechanism is unknown or these credentials do not suit it (no
 * password for PLAIN, no token for OAUTHBEARER). Throws SaslError(BadCredentials) when they suit it but
 * cannot be sent (a NUL in a PLAIN name, a malformed token).
 */
export function createSaslClient(mechanism: string, c: SaslClientCredentials): SaslClient | null {
  const { username, password, token, authzid } = c;
  const hasPassword = username !== undefined && password !== undefined;
  switch (saslMechanism(mechanism)) {
    case 'PLAIN':
      return hasPassword ? createPlainClient({ username, password, authzid }) : null;
    case 'LOGIN':
      return hasPassword && !authzid ? createLoginClient({ username, password }) : null;
    case 'CRAM-MD5':
      return hasPassword && !authzid ? createCramMd5Client({ username, password }) : null;
    case 'SCRAM-SHA-256':
      return hasPassword ? createScramSha256Client({ username, password, authzid, nonce: c.nonce }) : null;
    case 'OAUTHBEARER':
      return token !== undefined ? createOAuthBearerClient({ username, token, host: c.host, port: c.port }) : null;
    case 'XOAUTH2':
      return token !== undefined && username !== undefined ? createXOAuth2Client({ username, token }) : null;
    case null:
      return null;
  }
}

/** The client's order of preference: proofs before secrets, tokens before passwords, LOGIN last. */
export const SASL_CLIENT_PREFERENCE: readonly SaslMechanism[] = [
  'SCRAM-SHA-256',
  'OAUTHBEARER',
  'XOAUTH2',
  'PLAIN',
  'CRAM-MD5',
  'LOGIN',
];

/**
 * The first mechanism in `preference` that the server advertised (CAPA `SASL …`) and the credentials suit.
 * Unless `secure` (TLS, or a loopback connection), mechanisms that send the secret itself are skipped, so
 * a stripped or misconfigured STLS cannot make the client leak a password.
 */
export function chooseSaslClient(
  advertised: readonly string[],
  credentials: SaslClientCredentials,
  options: { readonly secure: boolean; readonly preference?: readonly SaslMechanism[] },
): SaslClient | null {
  const offered = new Set(advertised.map((m) => m.toUpperCase()));
  for (const name of options.preference ?? SASL_CLIENT_PREFERENCE) {
    if (!offered.has(name)) continue;
    if (!options.secure && MECHANISM_INFO[name].sendsSecret) continue;
    const client = createSaslClient(name, credentials);
    if (client) return client;
  }
  return null;
}
