/** RFC 1939 §5/§6 QUIT: in AUTHORIZATION just close; in TRANSACTION enter UPDATE and commit deletions. */
import { BOTH, type CommandSpec } from './types.ts';

export const quit: CommandSpec = {
  states: BOTH,
  async run(s) {
    if (s.state === 'TRANSACTION') return s.update();
    s.reply(`+OK ${s.text.bye}`);
    s.close('quit');
  },
};
