/** RFC 1939 §7 USER name. */
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const user: CommandSpec = {
  states: AUTHORIZATION,
  run(s, cmd) {
    if (!s.plaintextAllowed) {
      throw new Pop3Error(s.text.plaintextRefused, RespCode.Auth);
    }
    const name = cmd.rest;
    if (name.length === 0) throw new Pop3Error(s.text.userNeedsName);
    s.pendingUser = name;
    s.reply(`+OK ${s.text.sendPassword}`);
  },
};
