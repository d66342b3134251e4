/** RFC 1939 §5 RETR msg: the whole message, streamed and dot-stuffed. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const retr: CommandSpec = {
  states: TRANSACTION,
  async run(s, cmd) {
    const { msn, info } = s.message(cmd.args[0]);
    await s.sendMessage(info);
    s.counters.retrieved++;
    s.retrieved.add(msn - 1);
  },
};
