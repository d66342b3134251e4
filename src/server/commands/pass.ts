/** RFC 1939 §7 PASS string: the rest of the line is the password, spaces included. */
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import { awaitPenalty, enterTransaction, loginFailed } from '../login.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const pass: CommandSpec = {
  states: AUTHORIZATION,
  async run(s, cmd) {
    if (!s.plaintextAllowed) {
      throw new Pop3Error(s.text.plaintextRefused, RespCode.Auth);
    }
    const name = s.pendingUser;
    if (name === undefined) throw new Pop3Error(s.text.sendUserFirst);
    s.pendingUser = undefined;
    await awaitPenalty(s, name);
    const principal = await s.ctx.authenticator.verifyPassword(name, cmd.rest);
    if (!principal) return loginFailed(s, name, 'USER', 'bad credentials');
    await enterTransaction(s, principal, 'USER');
  },
};
