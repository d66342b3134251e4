/**
 * RFC 2449 §5 CAPA, valid in AUTHORIZATION and TRANSACTION. The list depends on the connection: STLS only
 * before TLS is up; USER only where a plaintext login is allowed (RFC 2595 §4 says a client must not send a
 * password the server would refuse); IMPLEMENTATION only when not hidden.
 *
 * RFC 2449 §5: "Capabilities available in the AUTHORIZATION state MUST be announced in both states", so USER,
 * SASL and STLS (each "both / no" in its capability description: announced in both states, no difference)
 * stay in the list after login, with the same values (issue 13 #7: they used to be dropped). Only LOGIN-DELAY
 * and EXPIRE may differ after authentication, as RFC 2449 §6.5/§6.7 allow.
 */
import { BOTH, type CommandSession, type CommandSpec } from './types.ts';

export function capabilities(s: CommandSession): string[] {
  const caps = ['TOP', 'UIDL', 'RESP-CODES', 'AUTH-RESP-CODE', 'PIPELINING'];
  if (s.plaintextAllowed) caps.push('USER');
  if (s.stlsAvailable) caps.push('STLS');
  const sasl = s.saslOffered();
  if (sasl.length > 0) caps.push(`SASL ${sasl.join(' ')}`);
  // RFC 2449 §6.5/§6.7: before login, the server-wide values ("USER" when users may differ); after login,
  // the values that apply to this user.
  const perUser = s.ctx.authenticator.hasPolicyOverrides?.() === true;
  const policy = s.policyFor(s.principal);
  const tag = s.state === 'AUTHORIZATION' && perUser ? ' USER' : '';
  if (policy.loginDelay > 0 || tag) caps.push(`LOGIN-DELAY ${policy.loginDelay}${tag}`);
  caps.push(`EXPIRE ${policy.expire === 'never' ? 'NEVER' : policy.expire}${tag}`);
  // RFC 6856: UTF-8 user names and passwords are accepted in USER/PASS; replies come in several languages.
  caps.push('UTF8 USER', 'LANG');
  if (s.ctx.implementation) caps.push('IMPLEMENTATION Postern');
  return caps;
}

export const capa: CommandSpec = {
  states: BOTH,
  run(s) {
    return s.sendLines(`+OK ${s.text.capaFollows}`, capabilities(s));
  },
};
