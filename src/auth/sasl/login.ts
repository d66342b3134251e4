/**
 * LOGIN: no RFC (draft-murchison-sasl-login expired), but every client knows it: the server asks
 * `Username:` then `Password:`, the client answers each with the bare string. Offered only on a protected
 * connection, like PLAIN. Kept for old Outlook and Apple Mail versions that know nothing else.
 */

import { ChallengeClient, challengeError, requirePassword, ServerMechanism } from './mechanism.ts';
import type { PasswordCredentials } from './plain.ts';
import type { SaslClient, SaslServer, SaslVerifier, ServerStep } from './types.ts';
import {
  badCredentials,
  challenge,
  decodeUtf8,
  failure,
  MAX_PASSWORD_BYTES,
  MAX_USER_BYTES,
  userProblem,
} from './util.ts';

export const LOGIN_USERNAME_CHALLENGE = 'Username:';
export const LOGIN_PASSWORD_CHALLENGE = 'Password:';

export function createLoginServer(verifier: Pick<SaslVerifier, 'verifyPassword'>): SaslServer {
  return new LoginServer(verifier, {});
}

class LoginServer extends ServerMechanism<Pick<SaslVerifier, 'verifyPassword'>> {
  readonly mechanism = 'LOGIN';
  private user: string | null = null;

  protected async next(response: Buffer | null, initial: boolean): Promise<ServerStep> {
    // An initial response (curl sends one) is the user name. An empty one (`=`) counts as none, as in
    // Dovecot, since LOGIN has no use for an empty user name.
    if (initial && (response === null || response.length === 0)) return challenge(LOGIN_USERNAME_CHALLENGE);
    const text = decodeUtf8(response ?? Buffer.alloc(0));
    if (this.user === null) {
      if (text === null) return failure('user name is not UTF-8');
      if (text === '') return failure('empty user name');
      if (Buffer.byteLength(text) > MAX_USER_BYTES) return failure('user name too long');
      if (userProblem(text) !== null) return failure('malformed user name');
      this.user = text;
      return challenge(LOGIN_PASSWORD_CHALLENGE);
    }
    if (text === null) return failure('password is not UTF-8');
    if (text === '') return failure('empty password');
    if (Buffer.byteLength(text) > MAX_PASSWORD_BYTES) return failure('password too long');
    const principal = await this.verifier.verifyPassword(this.user, text);
    return principal ? { kind: 'success', principal } : badCredentials(this.user);
  }
}

/**
 * Answers by the challenge's wording when it says user/name or pass (servers vary: `Username:`,
 * `User Name`, `Password:`), otherwise by position: first the user name, then the password.
 */
export function createLoginClient(credentials: Omit<PasswordCredentials, 'authzid'>): SaslClient {
  requirePassword('LOGIN', credentials, 'a password');
  return new LoginClient(credentials.username, credentials.password);
}

class LoginClient extends ChallengeClient {
  readonly mechanism = 'LOGIN';
  private answered = 0;
  private sentPassword = false;

  get done(): boolean {
    return this.sentPassword;
  }

  step(challengeData: Buffer): Buffer {
    if (this.sentPassword || this.answered >= 2) throw challengeError('LOGIN', 'unexpected third challenge');
    const prompt = challengeData.toString('latin1').toLowerCase();
    let wantsPassword: boolean;
    if (prompt.includes('pass')) wantsPassword = true;
    else if (prompt.includes('user') || prompt.includes('name')) wantsPassword = false;
    else wantsPassword = this.answered === 1;
    this.answered++;
    if (wantsPassword) {
      this.sentPassword = true;
      return Buffer.from(this.secret, 'utf8');
    }
    return Buffer.from(this.username, 'utf8');
  }
}
