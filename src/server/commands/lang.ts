/**
 * RFC 6856 §3 LANG [lang-range]: without an argument, lists the languages ("tag description" lines); with a
 * tag, switches the reply language (the +OK is already in the new language); "*" picks the server default.
 */
import { Pop3Error } from '../../protocol/errors.ts';
import { catalogues, DEFAULT_LANG, matchLanguage } from '../messages.ts';
import { BOTH, type CommandSpec } from './types.ts';

export const lang: CommandSpec = {
  states: BOTH,
  run(s, cmd) {
    if (cmd.args.length === 0) {
      return s.sendLines(
        `+OK ${s.text.langFollows}`,
        Object.entries(catalogues).map(([tag, c]) => `${tag} ${c.name}`),
      );
    }
    const wanted = cmd.args[0] === '*' ? DEFAULT_LANG : matchLanguage(cmd.args[0]);
    if (wanted === undefined) throw new Pop3Error(s.text.langUnknown);
    s.lang = wanted;
    // RFC 6856 §3 example: "+OK es Idioma cambiado" — the chosen tag, then text in that language.
    s.reply(`+OK ${wanted} ${s.text.langChanged}`);
  },
};
