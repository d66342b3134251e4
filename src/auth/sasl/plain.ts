/**
 * PLAIN, RFC 4616: one client message `[authzid] NUL authcid NUL passwd`, all UTF-8. The password travels in
 * clear inside the TLS session, so the server offers PLAIN only on a protected connection (design.md §8).
 */

import { credentialsError, InitialResponseClient, MessageServer } from './mechanism.ts';
import type { ClientFirstSaslClient, ProxyAuthorization, SaslServer, SaslVerifier, ServerStep } from './types.ts';
import { authorize, badCredentials, failure, MAX_PASSWORD_BYTES, MAX_USER_BYTES, userProblem } from './util.ts';

export { InitialResponseClient } from './mechanism.ts';

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

class PlainServer extends MessageServer<Pick<SaslVerifier, 'verifyPassword' | 'lookup'>, PlainServerOptions> {
  readonly mechanism = 'PLAIN';

  protected async message(text: string): Promise<ServerStep> {
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
  if (username === '' || password === '') throw credentialsError('PLAIN needs a user name and a password');
  if ([username, password, authzid].some((s) => s.includes('\0'))) {
    throw credentialsError('PLAIN cannot carry a NUL in a user name or password');
  }
  return new InitialResponseClient('PLAIN', Buffer.from(`${authzid}\0${username}\0${password}`, 'utf8'));
}
