/**
 * Choosing and running an authentication: USER/PASS and APOP (RFC 1939 §7), or SASL (RFC 5034) with the
 * mechanisms of src/auth/sasl. Secrets are resolved once, used once, and never reach a debug line or an error
 * message.
 */

import { type SaslClient, SaslError } from '../auth/sasl/types.ts';
import { nodeCrypto } from '../mail/crypto.ts';
import type { Capabilities } from './capabilities.ts';
import { Pop3AuthError, Pop3ClientError, Pop3ErrorCode, Pop3ResponseError } from './errors.ts';

export const AUTH_MECHANISMS = [
  'SCRAM-SHA-256',
  'CRAM-MD5',
  'APOP',
  'PLAIN',
  'LOGIN',
  'USER',
  'OAUTHBEARER',
  'XOAUTH2',
] as const;
export type AuthMechanism = (typeof AUTH_MECHANISMS)[number];

type Secret = string | (() => string | Promise<string>);

export interface AuthOptions {
  user: string;
  /** The password, or a function that returns it (called at most once, only when needed). */
  password?: Secret;
  /** An OAuth 2.0 access token for OAUTHBEARER / XOAUTH2, or a function that returns it. */
  accessToken?: Secret;
  /** Authorization identity (act as another user) for PLAIN and SCRAM; rarely needed. */
  authzid?: string;
  /**
   * One mechanism, or a list in order of preference, limited to what the server offers. Default: the strongest
   * the server offers, for a password SCRAM-SHA-256 > CRAM-MD5 > APOP > PLAIN > LOGIN > USER (the first three
   * never send the password itself), for a token OAUTHBEARER > XOAUTH2.
   */
  mechanism?: AuthMechanism | readonly AuthMechanism[];
}

/** Mechanisms that send the password or token itself: refused without TLS unless allowInsecureAuth is set. */
const CLEARTEXT: ReadonlySet<AuthMechanism> = new Set(['PLAIN', 'LOGIN', 'USER', 'OAUTHBEARER', 'XOAUTH2']);
const PASSWORD_ORDER: readonly AuthMechanism[] = ['SCRAM-SHA-256', 'CRAM-MD5', 'APOP', 'PLAIN', 'LOGIN', 'USER'];
const TOKEN_ORDER: readonly AuthMechanism[] = ['OAUTHBEARER', 'XOAUTH2'];

export interface AuthContext {
  caps: Capabilities;
  apopTimestamp: string | undefined;
  secure: boolean;
  allowInsecureAuth: boolean;
  /** SASL mechanisms this build has a client for. */
  saslAvailable: ReadonlySet<string>;
}

/** Which mechanisms the server offers, as far as we can tell. */
export function offered(mech: AuthMechanism, ctx: AuthContext): boolean {
  if (mech === 'APOP') return ctx.apopTimestamp !== undefined;
  // RFC 2449 §6.3: USER is advertised when allowed; a server without CAPA is an RFC 1939 server, which has it.
  if (mech === 'USER') return ctx.caps.has('USER') || !ctx.caps.known;
  return ctx.caps.sasl.includes(mech) && ctx.saslAvailable.has(mech);
}

/** The mechanisms to try (only the first is used: a refused login is not retried with another mechanism). */
export function chooseMechanism(auth: AuthOptions, ctx: AuthContext): AuthMechanism {
  const wanted: readonly AuthMechanism[] =
    auth.mechanism === undefined
      ? auth.accessToken !== undefined
        ? TOKEN_ORDER
        : PASSWORD_ORDER
      : typeof auth.mechanism === 'string'
        ? [auth.mechanism]
        : auth.mechanism;
  const skipped: string[] = [];
  for (const m of wanted) {
    if (!AUTH_MECHANISMS.includes(m)) throw new TypeError(`unknown authentication mechanism ${m}`);
    if (!offered(m, ctx)) {
      skipped.push(`${m} (not offered)`);
      continue;
    }
    if (CLEARTEXT.has(m) && !ctx.secure && !ctx.allowInsecureAuth) {
      skipped.push(`${m} (would send the secret without TLS; set allowInsecureAuth to permit)`);
      continue;
    }
    return m;
  }
  throw new Pop3AuthError(
    'AUTH',
    `no usable authentication mechanism: ${skipped.join(', ') || 'none requested'}`,
    undefined,
  );
}

export async function resolveSecret(s: Secret | undefined, what: string, mech: string): Promise<string> {
  if (s === undefined) throw new Pop3AuthError(mech, `${mech} needs a ${what}`, undefined);
  const v = typeof s === 'function' ? await s() : s;
  if (typeof v !== 'string') throw new TypeError(`${what} must be a string`);
  return v;
}

/** RFC 1939 §7: the APOP digest, MD5(timestamp + secret) in lower-case hex. */
export function apopDigest(timestamp: string, secret: string): string {
  return nodeCrypto().createHash('md5').update(timestamp, 'utf8').update(secret, 'utf8').digest('hex');
}

/**
 * A -ERR during login becomes an auth error unless it carries a code that says the credentials were not the
 * problem (RFC 2449 IN-USE / LOGIN-DELAY, RFC 3206 SYS/TEMP, SYS/PERM): those stay Pop3ResponseError so a caller
 * can tell "wrong password" from "try later".
 */
export function asAuthError(err: unknown): unknown {
  if (!(err instanceof Pop3ResponseError) || err.code !== Pop3ErrorCode.Response) return err;
  const rc = err.respCode?.toUpperCase();
  if (rc === 'IN-USE' || rc === 'LOGIN-DELAY' || rc === 'SYS/TEMP' || rc === 'SYS/PERM') return err;
  return new Pop3AuthError(err.command, err.text, err.respCode);
}

/** Maps a SaslError from a mechanism into a client error with a stable code. */
export function fromSaslError(err: unknown): unknown {
  if (err instanceof SaslError) {
    const e = new Pop3AuthError('AUTH', `SASL: ${err.message} (${err.code})`, undefined);
    return e;
  }
  return err;
}

/**
 * Runs one SASL exchange over `send`. `send(line)` transmits a client line and `exchange` is the connection's
 * AUTH primitive; kept here so the framing rules (RFC 5034 §4) sit in one place:
 * - the initial response goes on the AUTH line, base64, "=" when empty, unless the line would exceed 255 octets;
 * - each "+ challenge" is base64-decoded and answered with base64(step(challenge));
 * - a challenge we cannot decode cancels with "*".
 */
export function saslLines(mech: SaslClient): {
  first: string;
  onChallenge: (challenge: string) => Promise<string>;
} {
  const initial = mech.start();
  let pendingInitial: Buffer | null = null;
  let first = `AUTH ${mech.mechanism}`;
  if (initial !== null) {
    const ir = initial.length === 0 ? '=' : initial.toString('base64');
    // RFC 5034 §4: the AUTH command line, CRLF included, must not exceed 255 octets with an initial response.
    if (first.length + 1 + ir.length + 2 <= 255) first += ` ${ir}`;
    else pendingInitial = initial;
  }
  return {
    first,
    async onChallenge(challenge: string): Promise<string> {
      if (challenge !== '' && !/^[A-Za-z0-9+/]*={0,2}$/.test(challenge)) {
        throw new Pop3ClientError(Pop3ErrorCode.Protocol, 'AUTH: server challenge is not base64');
      }
      const bytes = Buffer.from(challenge, 'base64');
      if (pendingInitial !== null && bytes.length === 0) {
        const r = pendingInitial;
        pendingInitial = null;
        return r.toString('base64');
      }
      try {
        return mech.step(bytes).toString('base64');
      } catch (err) {
        throw fromSaslError(err);
      }
    },
  };
}
