/**
 * PLAIN, RFC 4616: one client message `[authzid] NUL authcid NUL passwd`, all UTF-8. The password travels in
 * clear inside the TLS session, so the server offers PLAIN only on a protected connection (design.md §8).
 */

import {
  type ClientFirstSaslClient,
  type ProxyAuthorization,
  SaslError,
  SaslErrorCode,
  type SaslServer,
  type SaslVerifier,
  type ServerStep,
} from './types.ts';
import {
  authorize,
  badCredentials,
  challenge,
  decodeUtf8,
  failure,
  MAX_PASSWORD_BYTES,
  MAX_PAYLOAD_BYTES,
  MAX_USER_BYTES,
  ServerMechanism,
  userProblem,
} from './util.ts';

export interface PasswordCredentials {
  readonly username: string;
  readonly password: string;
  /** Ask to act as another user (proxy authorization); empty or absent means "as myself". */
  readonly authzid?: string;
}

export interface PlainServerOptions {
  /** Lets an authenticated user act as another; without it an authzid other than the authcid fails. */
  readonly allowProxy?: ProxyAuthorization;
}

export function createPlainServer(
  verifier: Pick<SaslVerifier, 'verifyPassword' | 'lookup'>,
  options: PlainServerOptions = {},
): SaslServer {
  return new PlainServer(verifier, options);
}

class PlainServer extends ServerMechanism {
  readonly mechanism = 'PLAIN';

  constructor(
    private readonly verifier: Pick<SaslVerifier, 'verifyPassword' | 'lookup'>,
    private readonly options: PlainServerOptions,
  ) {
    super();
  }

  protected async next(response: Buffer | null): Promise<ServerStep> {
    // PLAIN is client-first; with no initial response, an empty challenge asks for the message (RFC 4422 §5).
    if (response === null) return challenge(Buffer.alloc(0));
    if (response.length > MAX_PAYLOAD_BYTES) return failure('message too long');
    const text = decodeUtf8(response);
    if (text === null) return failure('message is not UTF-8');
    const fields = text.split('\0');
    if (fields.length !== 3) return failure('malformed message: not two NUL separators');
    const [authzid, authcid, password] = fields;
    if (authcid === '') return failure('empty authentication identity');
    if (password === '') return failure('empty password');
    if (Buffer.byteLength(authcid) > MAX_USER_BYTES || Buffer.byteLength(authzid) > MAX_USER_BYTES) {
      return failure('identity too long');
    }
    if (Buffer.byteLength(password) > MAX_PASSWORD_BYTES) return failure('password too long');
    if (userProblem(authcid) !== null) return failure('malformed authentication identity');
    // Refuse a foreign authzid before spending a password hash on it: no secret decides this.
    if (authzid !== '' && authzid !== authcid && !this.options.allowProxy) {
      return failure('authorization identity differs from authentication identity');
    }
    const principal = await this.verifier.verifyPassword(authcid, password);
    if (!principal) return badCredentials(authcid);
    return authorize(this.verifier, principal, authzid, this.options.allowProxy);
  }
}

/** Throws SaslError(BadCredentials) when a field is empty or holds a NUL, which PLAIN cannot carry. */
export function createPlainClient(credentials: PasswordCredentials): ClientFirstSaslClient {
  const { username, password, authzid = '' } = credentials;
  if (username === '' || password === '')
    throw new SaslError(SaslErrorCode.BadCredentials, 'PLAIN needs a user name and a password');
  if ([username, password, authzid].some((s) => s.includes('\0'))) {
    throw new SaslError(SaslErrorCode.BadCredentials, 'PLAIN cannot carry a NUL in a user name or password');
  }
  return new InitialResponseClient('PLAIN', Buffer.from(`${authzid}\0${username}\0${password}`, 'utf8'));
}

/**
 * A mechanism whose whole client part is one initial response (PLAIN, and the OAuth ones reuse the frame).
 * An empty challenge asks for it when it was not sent inline; any other challenge is refused.
 */
export class InitialResponseClient implements ClientFirstSaslClient {
  private sent = false;

  constructor(
    readonly mechanism: string,
    private readonly message: Buffer,
  ) {}

  get done(): boolean {
    return this.sent;
  }

  start(): Buffer {
    this.sent = true;
    return Buffer.from(this.message);
  }

  step(challengeData: Buffer): Buffer {
    if (challengeData.length === 0) return this.start();
    throw new SaslError(SaslErrorCode.BadChallenge, `${this.mechanism}: unexpected server challenge`);
  }

  finish(): void {}
}
