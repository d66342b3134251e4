/** RFC 1939 §7 USER name. */
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const user: CommandSpec = {
  states: AUTHORIZATION,
  run(s, cmd) {
    if (!s.plaintextAllowed) {
      throw new Pop3Error('Plaintext authentication disallowed on non-secure connections; use STLS.', RespCode.Auth);
    }
    const name = cmd.rest;
    if (name.length === 0) throw new Pop3Error('USER needs a name.');
    s.pendingUser = name;
    s.reply('+OK Send your password.');
  },
};
