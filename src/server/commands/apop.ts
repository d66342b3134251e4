/**
 * RFC 1939 §7 APOP name digest. Offered only when the user store holds shared secrets (the greeting then
 * carries a fresh timestamp); a user without a stored secret fails exactly like a wrong digest.
 */
import { verifyApop } from '../../auth/apop.ts';
import { Pop3Error } from '../../protocol/errors.ts';
import { awaitPenalty, enterTransaction, loginFailed } from '../login.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const apop: CommandSpec = {
  states: AUTHORIZATION,
  async run(s, cmd) {
    const timestamp = s.apopTimestamp;
    if (timestamp === undefined) throw new Pop3Error(s.text.apopUnavailable);
    const sp = cmd.rest.lastIndexOf(' ');
    const name = sp > 0 ? cmd.rest.slice(0, sp) : '';
    const digest = sp > 0 ? cmd.rest.slice(sp + 1) : '';
    if (name.length === 0 || !/^[0-9a-fA-F]{32}$/.test(digest)) throw new Pop3Error(s.text.usageApop);
    await awaitPenalty(s, name);
    const secret = await s.ctx.authenticator.sharedSecret(name);
    const ok = secret !== null && verifyApop(secret, timestamp, digest.toLowerCase());
    const principal = ok ? await s.ctx.authenticator.lookup(name) : null;
    if (!principal) return loginFailed(s, name, 'APOP', secret === null ? 'no shared secret' : 'bad digest');
    await enterTransaction(s, principal, 'APOP');
  },
};
