/**
 * Pieces shared by the mechanisms: strict UTF-8, RFC 5802 saslnames and GS2 headers, the size limits, the
 * authorization-identity rule and the steps a server side returns (the frames are in mechanism.ts).
 */
import { userNameProblem } from '../names.ts';
import type { Principal, ProxyAuthorization, SaslVerifier, ServerStep } from './types.ts';

/** RFC 4616 §2 asks servers to accept at least 255 octets per field; names.ts caps user names there too. */
export const MAX_USER_BYTES = 255;
/**
 * The same bound as `postern user add` (passwd-edit.ts MAX_PASSWORD_BYTES), so no stored password is cut
 * off. Repeated, not imported: passwd-edit.ts pulls in argon2, and the client library must not load that.
 */
export const MAX_PASSWORD_BYTES = 1024;
/**
 * A ceiling on any one password-style payload (PLAIN, LOGIN, CRAM-MD5, SCRAM messages). The caller's line
 * limit comes first; this keeps a mechanism safe when used with a laxer transport.
 */
export const MAX_PAYLOAD_BYTES = 4096;
/**
 * OAuth access tokens are large (Azure AD tokens run to several KB) and issue 3 asks for at least 16 KB
 * continuation lines; 64 KiB decoded leaves room for any real token and still bounds the work.
 */
export const MAX_BEARER_PAYLOAD_BYTES = 64 * 1024;

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The bytes as a string, or null when they are not well-formed UTF-8 (RFC 3629: no overlongs, no surrogates). */
export function decodeUtf8(bytes: Uint8Array): string | null {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return null;
  }
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Canonical padded base64 only (Buffer.from would skip junk silently); null otherwise. */
export function decodeBase64Strict(s: string): Buffer | null {
  return BASE64.test(s) ? Buffer.from(s, 'base64') : null;
}

/** RFC 5802 §5.1 saslname: `,` and `=` travel as `=2C` and `=3D`. Also used by the OAUTHBEARER GS2 header. */
export function encodeSaslName(name: string): string {
  return name.replace(/=/g, '=3D').replace(/,/g, '=2C');
}

/** The name, or null when the saslname holds a raw `,` or an `=` not starting `=2C`/`=3D` (RFC 5802 §5.1). */
export function decodeSaslName(s: string): string | null {
  if (s.includes(',')) return null;
  if (/=(?!2C|3D)/.test(s)) return null;
  return s.replace(/=2C/g, ',').replace(/=3D/g, '=');
}

export interface Gs2Header {
  /** `n`: client does not support channel binding; `y`: it does, but thinks the server does not; `p`: it wants it. */
  readonly cbind: 'n' | 'y' | 'p';
  readonly authzid: string | undefined;
  /** The header itself, including its final comma (SCRAM echoes it, base64, in `c=`). */
  readonly raw: string;
  /** What follows the header. */
  readonly rest: string;
}

/**
 * Splits `gs2-header = gs2-cbind-flag "," [ authzid ] ","` (RFC 5802 §7, RFC 7628 §3.1) off a message.
 * Returns a reason string when it is malformed.
 */
export function parseGs2Header(message: string): Gs2Header | string {
  const first = message.indexOf(',');
  const second = first < 0 ? -1 : message.indexOf(',', first + 1);
  if (second < 0) return 'malformed GS2 header';
  const flag = message.slice(0, first);
  let cbind: Gs2Header['cbind'];
  if (flag === 'n' || flag === 'y') cbind = flag;
  else if (/^p=[A-Za-z0-9.-]+$/.test(flag)) cbind = 'p';
  else return 'malformed GS2 channel-binding flag';
  const authzField = message.slice(first + 1, second);
  let authzid: string | undefined;
  if (authzField !== '') {
    if (!authzField.startsWith('a=')) return 'malformed GS2 authzid';
    const name = decodeSaslName(authzField.slice(2));
    if (name === null || name === '') return 'malformed GS2 authzid';
    authzid = name;
  }
  return { cbind, authzid, raw: message.slice(0, second + 1), rest: message.slice(second + 1) };
}

/** Why `user` cannot be a user name here (names.ts rules: 1–255 bytes, no controls, `:`, `/`…), or null. */
export function userProblem(user: string): string | null {
  return userNameProblem(user);
}

export function challenge(data: Buffer | string): ServerStep {
  return { kind: 'challenge', data: typeof data === 'string' ? Buffer.from(data, 'utf8') : data };
}

export function failure(reason: string, challengeData?: Buffer): ServerStep {
  return challengeData ? { kind: 'failure', reason, challenge: challengeData } : { kind: 'failure', reason };
}

/** One wording for unknown user and wrong credential, so even a log reader cannot tell them apart by text. */
/** The reason logged for a wrong password, digest or proof: the same words as USER/PASS (README, fail2ban). */
export const INVALID_CREDENTIALS = 'bad credentials';

/** A wrong password, digest or proof for `user`: the log line names the user, the client learns nothing more. */
export function badCredentials(user: string): ServerStep {
  return { kind: 'failure', reason: INVALID_CREDENTIALS, user };
}

/**
 * The success step for `authenticated`, honouring a requested authorization identity. RFC 4422 §3.4.1: an
 * empty authzid, or one equal to the authentication identity, means "act as myself". Anything else is
 * proxy authorization, refused unless the operator's hook allows it for this pair (RFC 4616 §2 leaves the
 * policy to the server; without the hook a stolen password of a privileged account reaches no one else).
 */
export async function authorize(
  verifier: Pick<SaslVerifier, 'lookup'>,
  authenticated: Principal,
  authzid: string | undefined,
  allowProxy: ProxyAuthorization | undefined,
  data?: Buffer,
): Promise<ServerStep> {
  if (authzid === undefined || authzid === '' || authzid === authenticated.user) {
    return data ? { kind: 'success', principal: authenticated, data } : { kind: 'success', principal: authenticated };
  }
  if (!allowProxy) return failure('authorization identity differs from authentication identity');
  if (userProblem(authzid) !== null) return failure('malformed authorization identity');
  if (!(await allowProxy(authenticated, authzid))) return failure('proxy authorization refused');
  const target = await verifier.lookup(authzid);
  if (!target) return failure('proxy authorization to an unknown user');
  return data
    ? { kind: 'success', principal: target, data, authcid: authenticated.user }
    : { kind: 'success', principal: target, authcid: authenticated.user };
}
