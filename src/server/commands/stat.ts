/** RFC 1939 §5 STAT: count and octets of the messages not marked deleted. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const stat: CommandSpec = {
  states: TRANSACTION,
  run(s) {
    const [n, size] = s.totals();
    s.reply(`+OK ${n} ${size}`);
  },
};
