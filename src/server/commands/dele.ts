/** RFC 1939 §5 DELE msg: marks the message; it is removed only in UPDATE, and its msn is never reused. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const dele: CommandSpec = {
  states: TRANSACTION,
  run(s, cmd) {
    const { msn } = s.message(cmd.args[0]);
    s.deleted.add(msn - 1);
    s.reply(`+OK ${s.text.messageDeleted(msn)}`);
  },
};
