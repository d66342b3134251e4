/** RFC 1939 §7 PASS string: the rest of the line is the password, spaces included. */
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const pass: CommandSpec = {
  states: AUTHORIZATION,
  async run(s, cmd) {
    if (!s.plaintextAllowed) {
      throw new Pop3Error('Plaintext authentication disallowed on non-secure connections; use STLS.', RespCode.Auth);
    }
    const name = s.pendingUser;
    if (name === undefined) throw new Pop3Error('Send USER first.');
    s.pendingUser = undefined;
    const principal = await s.ctx.authenticator.verifyPassword(name, cmd.rest);
    if (!principal) return s.loginFailed(name, 'USER', 'bad credentials');
    await s.enterTransaction(principal, 'USER');
  },
};
