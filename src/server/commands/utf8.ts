/**
 * RFC 6856 §2 UTF8: the client accepts UTF-8 in replies and message content; valid only in AUTHORIZATION.
 * Postern stores and sends message bytes unchanged, and USER/PASS/APOP names and passwords are UTF-8 in
 * every mode (the "USER" argument of the UTF8 capability says so).
 */
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const utf8: CommandSpec = {
  states: AUTHORIZATION,
  run(s) {
    s.utf8 = true;
    s.reply(`+OK ${s.text.utf8Enabled}`);
  },
};
