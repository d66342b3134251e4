/**
 * Bearer-token mechanisms: OAUTHBEARER (RFC 7628) and XOAUTH2 (Google's older form, still what many
 * clients and providers speak). The token is checked by the verifier (jwt.ts, bearer-command.ts); these
 * only parse and frame. A bearer token is a password for as long as it lives: offer these only on a
 * protected connection, and never log the payload.
 *
 *   OAUTHBEARER  C: n,a=user@example.com,^Ahost=server.example.com^Aport=110^Aauth=Bearer <token>^A^A
 *                S: (success) or  + {"status":"invalid_token",...}   C: ^A   S: -ERR
 *   XOAUTH2      C: user=<user>^Aauth=Bearer <token>^A^A
 *                S: (success) or  + {"status":"401",...}             C: (empty)   S: -ERR
 */
import { challengeError, credentialsError, InitialResponseClient, MessageServer } from './mechanism.ts';
import type { ClientFirstSaslClient, SaslServer, SaslVerifier, ServerStep } from './types.ts';
import { encodeSaslName, failure, MAX_BEARER_PAYLOAD_BYTES, parseGs2Header, userProblem } from './util.ts';

const KVSEP = '\x01';
/** RFC 7628 §3.1: `auth-scheme 1*SP b64token`, the scheme name case-insensitive (RFC 6750 §2.1). */
const BEARER = /^bearer +([A-Za-z0-9\-._~+/]+=*)$/i;
/** RFC 7628 §3.1: key = 1*(ALPHA); value = *(VCHAR / SP / HTAB / CR / LF). */
const KEY = /^[A-Za-z]+$/;
const VALUE = /^[\x21-\x7E \t\r\n]*$/;

export interface OAuthServerOptions {
  /** Put in the error challenge's `scope`, telling the client which scope to ask its provider for. */
  readonly scope?: string;
  /** OAUTHBEARER only: put in the error challenge's `openid-configuration` (RFC 7628 §3.2.2). */
  readonly openidConfiguration?: string;
}

/** What the server said in its error challenge, as far as it could be read. */
export interface OAuthServerError {
  readonly status?: string;
  readonly scope?: string;
  readonly openidConfiguration?: string;
  /** The challenge as text, for a library user's diagnostics. */
  readonly raw: string;
}

/** A bearer-token client; after a failed login `serverError` says what the server reported. */
export interface OAuthClient extends ClientFirstSaslClient {
  readonly serverError: OAuthServerError | null;
}

/**
 * `key=value^A` pairs ending in an extra `^A`. Returns null when malformed or when a key repeats (a
 * second `auth=` must not be able to shadow the first).
 */
function parseKvPairs(text: string): Map<string, string> | null {
  if (!text.endsWith(KVSEP + KVSEP)) return null;
  const pairs = text.slice(0, -2).split(KVSEP);
  const out = new Map<string, string>();
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq <= 0) return null;
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    if (!KEY.test(key) || !VALUE.test(value) || out.has(key)) return null;
    out.set(key, value);
  }
  return out;
}

function errorJson(status: string, options: OAuthServerOptions, withOpenid: boolean): Buffer {
  const body: Record<string, string> = { status, schemes: 'bearer' };
  if (options.scope !== undefined) body.scope = options.scope;
  if (withOpenid && options.openidConfiguration !== undefined) {
    body['openid-configuration'] = options.openidConfiguration;
  }
  return Buffer.from(JSON.stringify(body), 'utf8');
}

type BearerVerifier = Pick<SaslVerifier, 'verifyBearer'>;

/** Shared by both servers: the frame (with the larger size limit tokens need), and the token check. */
abstract class BearerServer extends MessageServer<BearerVerifier, OAuthServerOptions> {
  protected override readonly maxBytes = MAX_BEARER_PAYLOAD_BYTES;

  protected async verify(token: string, user: string | undefined, errorChallenge: Buffer): Promise<ServerStep> {
    const principal = await this.verifier.verifyBearer(token, user);
    // The JSON error goes out as a challenge; the client's answer to it ends the exchange (types.ts).
    return principal ? { kind: 'success', principal } : failure('invalid token', errorChallenge);
  }
}

export function createOAuthBearerServer(verifier: BearerVerifier, options: OAuthServerOptions = {}): SaslServer {
  return new OAuthBearerServer(verifier, options);
}

export function createXOAuth2Server(verifier: BearerVerifier, options: OAuthServerOptions = {}): SaslServer {
  return new XOAuth2Server(verifier, options);
}

class OAuthBearerServer extends BearerServer {
  readonly mechanism = 'OAUTHBEARER';

  protected async message(text: string): Promise<ServerStep> {
    const gs2 = parseGs2Header(text);
    if (typeof gs2 === 'string') return failure(gs2);
    if (gs2.cbind === 'p') return failure('channel binding requested but not supported');
    if (!gs2.rest.startsWith(KVSEP)) return failure('malformed message');
    const pairs = parseKvPairs(gs2.rest.slice(1));
    if (!pairs) return failure('malformed message');
    const token = bearerToken(pairs);
    if (!token) return failure('missing or malformed auth=Bearer');
    if (gs2.authzid !== undefined && userProblem(gs2.authzid) !== null) return failure('malformed user name');
    return this.verify(token, gs2.authzid, errorJson('invalid_token', this.options, true));
  }
}

class XOAuth2Server extends BearerServer {
  readonly mechanism = 'XOAUTH2';

  protected async message(text: string): Promise<ServerStep> {
    const pairs = parseKvPairs(text);
    if (!pairs) return failure('malformed message');
    const user = pairs.get('user');
    if (!user) return failure('missing user');
    if (userProblem(user) !== null) return failure('malformed user name');
    const token = bearerToken(pairs);
    if (!token) return failure('missing or malformed auth=Bearer');
    // Google answers a bad token with an HTTP-style status in this JSON; clients only show it.
    return this.verify(token, user, errorJson('401', this.options, false));
  }
}

/** The token of `auth=Bearer <token>`, or undefined. */
function bearerToken(pairs: Map<string, string>): string | undefined {
  const auth = pairs.get('auth');
  return auth === undefined ? undefined : BEARER.exec(auth)?.[1];
}

// ---------------------------------------------------------------------------------------------- clients

export interface BearerCredentials {
  /** The user to log in as; optional for OAUTHBEARER (the token then names the user), required for XOAUTH2. */
  readonly username?: string;
  /** The access token, as the provider issued it (no `Bearer ` prefix). */
  readonly token: string;
}

export interface OAuthBearerClientOptions extends BearerCredentials {
  /** RFC 7628 §3.1 `host` and `port`: the server the client thinks it talks to. Optional. */
  readonly host?: string;
  readonly port?: number;
}

function checkToken(token: string): void {
  if (!/^[A-Za-z0-9\-._~+/]+=*$/.test(token)) {
    throw credentialsError('the access token is empty or not a b64token (RFC 6750)');
  }
}

/** Throws SaslError(BadCredentials) for a malformed token, user name or host. */
export function createOAuthBearerClient(options: OAuthBearerClientOptions): OAuthClient {
  checkToken(options.token);
  const { username, host, port } = options;
  if (username !== undefined && (username === '' || /[\0\x01]/.test(username))) {
    throw credentialsError('OAUTHBEARER: malformed user name');
  }
  if (host !== undefined && !/^[\x21-\x7E]+$/.test(host)) {
    throw credentialsError('OAUTHBEARER: malformed host');
  }
  if (port !== undefined && !(Number.isInteger(port) && port > 0 && port < 65536)) {
    throw credentialsError('OAUTHBEARER: malformed port');
  }
  let message = `n,${username === undefined ? '' : `a=${encodeSaslName(username)}`},${KVSEP}`;
  if (host !== undefined) message += `host=${host}${KVSEP}`;
  if (port !== undefined) message += `port=${port}${KVSEP}`;
  message += `auth=Bearer ${options.token}${KVSEP}${KVSEP}`;
  // RFC 7628 §3.2.3: the client answers an error challenge with a lone kvsep.
  return new BearerClient('OAUTHBEARER', Buffer.from(message, 'utf8'), Buffer.from(KVSEP));
}

export function createXOAuth2Client(options: BearerCredentials): OAuthClient {
  checkToken(options.token);
  const { username } = options;
  if (!username || /[\0\x01]/.test(username)) {
    throw credentialsError('XOAUTH2 needs a user name without control characters');
  }
  const message = `user=${username}${KVSEP}auth=Bearer ${options.token}${KVSEP}${KVSEP}`;
  // Google's XOAUTH2 description: the client answers the error challenge with an empty response.
  return new BearerClient('XOAUTH2', Buffer.from(message, 'utf8'), Buffer.alloc(0));
}

/** The one message of InitialResponseClient, and the answer to the server's error challenge. */
class BearerClient extends InitialResponseClient implements OAuthClient {
  private error: OAuthServerError | null = null;

  constructor(
    mechanism: string,
    message: Buffer,
    private readonly errorAnswer: Buffer,
  ) {
    super(mechanism, message);
  }

  get serverError(): OAuthServerError | null {
    return this.error;
  }

  override step(challengeData: Buffer): Buffer {
    if (this.error) throw challengeError(this.mechanism, 'challenge after the error');
    // Empty: the server wants the message (it was not sent as an initial response).
    if (challengeData.length === 0) return this.start();
    // Anything else is the error report; answer it so the server can send its final -ERR.
    this.error = readServerError(challengeData);
    return Buffer.from(this.errorAnswer);
  }
}

function readServerError(data: Buffer): OAuthServerError {
  const raw = data.toString('utf8');
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    return { raw };
  }
  if (typeof parsed !== 'object' || parsed === null) return { raw };
  const o = parsed as Record<string, unknown>;
  const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return {
    raw,
    status: str(o.status),
    scope: str(o.scope),
    openidConfiguration: str(o['openid-configuration']),
  };
}
