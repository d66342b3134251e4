/**
 * RFC 2595 §4 STLS: only in AUTHORIZATION, only on a listener that offers it, only once, and not between USER
 * and PASS. After the +OK the connection swaps its socket for a TLS one (connection.ts), discarding any bytes
 * that came in the clear after the command.
 */
import { Pop3Error } from '../../protocol/errors.ts';
import { AUTHORIZATION, type CommandSpec } from './types.ts';

export const stls: CommandSpec = {
  states: AUTHORIZATION,
  run(s) {
    if (s.secure) throw new Pop3Error(s.text.tlsActive);
    if (!s.stlsAvailable) throw new Pop3Error(s.text.stlsUnavailable);
    if (s.pendingUser !== undefined) throw new Pop3Error(s.text.stlsAfterUser);
    const secureContext = s.ctx.secureContext;
    if (!secureContext) throw new Pop3Error(s.text.tlsUnavailable);
    s.reply(`+OK ${s.text.beginTls}`);
    s.startTls({
      secureContext,
      sniCallback: s.ctx.sniCallback,
      // Asked for, never required: a client without a certificate logs in some other way.
      requestCert: s.ctx.clientCertUser !== undefined,
      handshakeTimeoutMs: s.ctx.limits.tlsHandshakeTimeoutMs,
    });
  },
};
