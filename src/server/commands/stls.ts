/** RFC 2595 §4 STLS: only in AUTHORIZATION, only on a listener that offers it, only once. */
import { Pop3Error } from '../../protocol/errors.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const stls: CommandSpec = {
  states: AUTHORIZATION,
  run(s) {
    if (s.secure) throw new Pop3Error(s.text.tlsActive);
    if (!s.stlsAvailable) throw new Pop3Error(s.text.stlsUnavailable);
    if (s.pendingUser !== undefined) throw new Pop3Error(s.text.stlsAfterUser);
    s.startTls();
  },
};
