/** RFC 1939 §5 LIST [msg]: scan listings "msn size"; deleted messages are left out. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const list: CommandSpec = {
  states: TRANSACTION,
  run(s, cmd) {
    if (cmd.args.length > 0) {
      const { msn, info } = s.message(cmd.args[0]);
      s.reply(`+OK ${msn} ${info.size}`);
      return;
    }
    const [n, size] = s.totals();
    return s.sendLines(
      `+OK ${n} messages (${size} octets)`,
      (function* () {
        for (const { msn, info } of s.live()) yield `${msn} ${info.size}`;
      })(),
    );
  },
};
