/**
 * Getting a session ready, the steps before TRANSACTION: opening the transport (TCP, or implicit TLS per
 * RFC 8314), STLS (RFC 2595) and logging in (USER/PASS, APOP or SASL per RFC 5034). Pop3Client runs them in
 * order; each step is here with its RFC rules, the session's state stays in client.ts.
 */
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { SaslClient } from '../auth/sasl/types.ts';
import { nodeCrypto } from '../mail/crypto.ts';
import {
  type AuthContext,
  type AuthMechanism,
  type AuthOptions,
  apopDigest,
  asAuthError,
  chooseMechanism,
  fromSaslError,
  resolveSecret,
  saslLines,
} from './auth.ts';
import type { Connection } from './connection.ts';
import { Pop3AbortError, Pop3AuthError, Pop3ResponseError, Pop3TlsError } from './errors.ts';
import { openImplicitTls, openTcp, type TlsInfo, type TlsParams, tlsInfo, upgradeToTls } from './transport.ts';
import type { ConnectOptions } from './types.ts';

/** The connected transport, before the greeting is read. */
/** Mechanisms whose client uses node:crypto; "auto" (undefined) is decided only once CAPA is read. */
const CRYPTO_MECHANISMS: ReadonlySet<string> = new Set(['APOP', 'SCRAM-SHA-256', 'CRAM-MD5']);

function needsCrypto(mechanism: AuthMechanism | readonly AuthMechanism[] | undefined): boolean {
  if (mechanism === undefined) return false;
  return typeof mechanism === 'string' ? CRYPTO_MECHANISMS.has(mechanism) : CRYPTO_MECHANISMS.has(mechanism[0]);
}

export interface Opened {
  socket: Duplex;
  /** Set when the transport is TLS from the start (implicit TLS). */
  tls: TlsInfo | undefined;
  tlsParams: TlsParams;
}

/** Connects (or takes `options.socket`) and, for implicit TLS, completes the handshake. */
export async function openTransport(options: ConnectOptions, timeoutMs: number): Promise<Opened> {
  const port = options.port ?? (options.tls === 'implicit' ? 995 : 110);
  const pins = options.pinSha256 === undefined ? undefined : [options.pinSha256].flat();
  const tlsParams: TlsParams = { host: options.host, tlsOptions: options.tlsOptions, pinSha256: pins };
  const signal = options.signal;
  if (signal?.aborted) throw new Pop3AbortError(signal.reason);
  if (options.socket) {
    if (options.tls !== 'implicit') return { socket: options.socket, tls: undefined, tlsParams };
    const s = await upgradeToTls(options.socket, tlsParams, timeoutMs, signal);
    return { socket: s, tls: tlsInfo(s), tlsParams };
  }
  if (options.tls === 'implicit') {
    const s = await openImplicitTls(tlsParams, port, timeoutMs, signal);
    return { socket: s, tls: tlsInfo(s), tlsParams };
  }
  // A connection that stays plain reads into one reused buffer (see openTcp).
  const opening = openTcp(options.host, port, timeoutMs, signal, { reuseBuffer: options.tls === 'none' });
  // node:crypto is loaded on first use (mail/crypto.ts): STLS (node:tls), APOP, SCRAM and CRAM-MD5 need it;
  // USER/PASS, PLAIN and LOGIN do not. When the login is known to need it, it is loaded now, while the server
  // accepts and sends its greeting. Otherwise not: the greeting comes in ~0.2 ms from a server on the same
  // host, and ~6 ms of loading crypto for a PLAIN login is then only a cost (issue 11).
  if (options.tls === 'starttls' || needsCrypto(options.auth?.mechanism)) nodeCrypto();
  return { socket: await opening, tls: undefined, tlsParams };
}

/** RFC 2595 §4 STLS, then the handshake on the same socket. The caller reads CAPA again (§4: it may have changed). */
export async function startTls(
  conn: Connection,
  tlsParams: TlsParams,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<TlsInfo> {
  try {
    await conn.single('STLS', '', { barrier: true });
  } catch (err) {
    if (err instanceof Pop3ResponseError) {
      throw new Pop3TlsError(`server refused STLS: ${err.message}`, { cause: err });
    }
    throw err;
  }
  const plain = conn.detachForUpgrade();
  const s: TLSSocket = await upgradeToTls(plain, tlsParams, timeoutMs, signal);
  conn.attachUpgraded(s);
  return tlsInfo(s);
}

/** What a login needs to know besides the credentials. */
export interface LoginContext extends Omit<AuthContext, 'saslAvailable'> {
  host: string;
  port: number | undefined;
}

/**
 * Logs in with the chosen (or strongest offered) mechanism and returns it. Every failure is an auth error unless
 * the server said why otherwise (see asAuthError). A SCRAM server that cannot prove it knows the credentials
 * fails with `unverified` called first, so that the session is dropped before the error is seen.
 */
export async function login(
  conn: Connection,
  auth: AuthOptions,
  ctx: LoginContext,
  unverified: (err: Pop3AuthError) => void,
): Promise<AuthMechanism> {
  // The SASL mechanisms only for a server that offers SASL: no other can be chosen. (They load node:crypto only
  // when a mechanism that uses it runs.)
  const sasl = ctx.caps.sasl.length > 0 ? await import('./sasl.ts') : undefined;
  const mech = chooseMechanism(auth, { ...ctx, saslAvailable: sasl?.saslMechanismsAvailable() ?? new Set() });
  try {
    if (mech === 'USER') {
      const password = await resolveSecret(auth.password, 'password', mech);
      await conn.single('USER', auth.user, { barrier: true });
      await conn.single('PASS', password, { barrier: true, debugText: 'PASS <password redacted>' });
    } else if (mech === 'APOP') {
      const password = await resolveSecret(auth.password, 'password', mech);
      const digest = apopDigest(ctx.apopTimestamp ?? '', password);
      if (/\s/.test(auth.user)) throw new TypeError('APOP: the user name must not contain white space');
      await conn.single('APOP', `${auth.user} ${digest}`, {
        barrier: true,
        debugText: `APOP ${auth.user} <digest redacted>`,
      });
    } else {
      const secret =
        mech === 'OAUTHBEARER' || mech === 'XOAUTH2'
          ? await resolveSecret(auth.accessToken, 'access token', mech)
          : await resolveSecret(auth.password, 'password', mech);
      if (sasl === undefined) throw new TypeError(`${mech} is not offered`); // chooseMechanism() checked
      const client: SaslClient = sasl.saslClientFor(mech, {
        user: auth.user,
        secret,
        authzid: auth.authzid,
        host: ctx.host,
        port: ctx.port,
      });
      const { first, onChallenge } = saslLines(client);
      const ok = await conn.sasl(
        first,
        `AUTH ${mech}${first.length > `AUTH ${mech}`.length ? ' <redacted>' : ''}`,
        onChallenge,
      );
      void ok; // RFC 5034: +OK carries no SASL data; SCRAM's server-final came as the last challenge.
      try {
        client.finish(null);
      } catch (err) {
        // The server claimed success without proving it knows the credentials (SCRAM): drop the session.
        const e = new Pop3AuthError('AUTH', `${mech}: server not verified: ${(err as Error).message}`, undefined);
        unverified(e);
        throw e;
      }
    }
  } catch (err) {
    throw asAuthError(fromSaslError(err));
  }
  return mech;
}
