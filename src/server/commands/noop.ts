/** RFC 1939 §5 NOOP. */
import { type CommandSpec, TRANSACTION } from './types.ts';

export const noop: CommandSpec = {
  states: TRANSACTION,
  run(s) {
    s.reply('+OK');
  },
};
