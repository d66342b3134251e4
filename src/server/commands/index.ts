/** The command table: plain data, one entry per verb (style.md: Dovecot's pop3_commands[]). */
import { apop } from './apop.ts';
import { auth } from './auth.ts';
import { capa } from './capa.ts';
import { dele } from './dele.ts';
import { lang } from './lang.ts';
import { list } from './list.ts';
import { noop } from './noop.ts';
import { pass } from './pass.ts';
import { quit } from './quit.ts';
import { retr } from './retr.ts';
import { rset } from './rset.ts';
import { stat } from './stat.ts';
import { stls } from './stls.ts';
import { top } from './top.ts';
import type { CommandSpec } from './types.ts';
import { uidl } from './uidl.ts';
import { user } from './user.ts';
import { utf8 } from './utf8.ts';

export const commands: Readonly<Record<string, CommandSpec>> = {
  USER: user,
  PASS: pass,
  APOP: apop,
  AUTH: auth,
  QUIT: quit,
  STAT: stat,
  LIST: list,
  RETR: retr,
  DELE: dele,
  NOOP: noop,
  RSET: rset,
  TOP: top,
  UIDL: uidl,
  CAPA: capa,
  STLS: stls,
  UTF8: utf8,
  LANG: lang,
};
