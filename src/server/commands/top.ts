/** RFC 1939 §7 TOP msg n: the headers, the blank line, and the first n lines of the body. */
import { parseNonNegative } from '../../protocol/command.ts';
import { Pop3Error } from '../../protocol/errors.ts';
import { sendMessage } from './retr.ts';
import { type CommandSpec, TRANSACTION } from './types.ts';

export const top: CommandSpec = {
  states: TRANSACTION,
  async run(s, cmd) {
    if (cmd.args.length !== 2) throw new Pop3Error(s.text.usageTop);
    const { info } = s.message(cmd.args[0]);
    const lines = parseNonNegative(cmd.args[1]);
    if (lines === null) throw new Pop3Error(s.text.invalidLineCount);
    await sendMessage(s, info, lines);
  },
};
