/** RFC 1939 §5 RSET: unmarks every message marked deleted in this session. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const rset: CommandSpec = {
  states: TRANSACTION,
  run(s) {
    s.deleted.clear();
    const [n, size] = s.totals();
    s.reply(`+OK ${s.text.maildropHas(n, size)}`);
  },
};
