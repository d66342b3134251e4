/**
 * The steps every login method shares (USER/PASS, APOP, AUTH): on success, take the maildrop lock, apply
 * LOGIN-DELAY (RFC 2449 §6.5) and enter TRANSACTION; on failure, the same penalty delay, reply and log line
 * whatever the reason, so neither replies nor timing tell an unknown user from a wrong password. Before any
 * verification, the penalty of earlier failures from the address (and for the user) is waited out
 * (awaitPenalty), so hanging up gains an attacker nothing.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Principal } from '../auth/passwd.ts';
import { Pop3Error, RespCode } from '../protocol/errors.ts';
import type { Maildrop } from '../storage/types.ts';
import { isStorageError } from '../storage/types.ts';
import type { CommandSession } from './commands/types.ts';

/**
 * Waits out the failed-login penalty of the client's address and of `user` (when the attempt names one)
 * before a credential is verified (issue 13 #2). Every login method calls this right before it verifies,
 * whether the password will turn out right or wrong. Replies already queued (the +OK to a USER that came in
 * one packet with its PASS) go out first. Throws when the client hangs up meanwhile: nothing is verified.
 */
export async function awaitPenalty(s: CommandSession, user: string | undefined): Promise<void> {
  const wait = await s.ctx.coordinator.gate(s.remoteAddress, user);
  if (wait <= 0) return;
  s.flush();
  s.log.debug({ user, waitMs: wait }, 'verification waits for the failed-login penalty');
  await sleep(wait);
  if (s.isClosed) throw new Pop3Error(s.text.authFailed, RespCode.Auth);
}

/** Called once the principal is verified: takes the maildrop lock, then enters TRANSACTION. */
export async function enterTransaction(s: CommandSession, principal: Principal, mechanism: string): Promise<void> {
  let md: Maildrop;
  try {
    md = await s.ctx.store.openMaildrop(principal.mailboxId);
  } catch (err) {
    const kind = isStorageError(err) ? err.kind : 'error';
    // The error names the Maildir and the errno (e.g. EACCES): what the operator must fix.
    const fields = { user: principal.user, kind, err: (err as Error).message };
    if (kind === 'inuse') s.log.info(fields, 'maildrop open failed');
    else s.log.warn(fields, 'maildrop open failed');
    throw err;
  }
  if (s.isClosed) {
    await md.release();
    return;
  }
  const policy = s.policyFor(principal);
  if (policy.loginDelay > 0 || policy.expire !== 'never') {
    try {
      // Read and written under the maildrop lock, so concurrent logins on any process see one order.
      const state = await md.readState();
      const now = Date.now();
      const wait = policy.loginDelay * 1000 - (now - (state.lastLogin ?? 0));
      if (policy.loginDelay > 0 && wait > 0) {
        s.log.info({ user: principal.user, waitMs: wait }, 'login refused: LOGIN-DELAY');
        throw new Pop3Error(s.text.loginDelay(policy.loginDelay), RespCode.LoginDelay);
      }
      if (policy.loginDelay > 0) {
        s.maildropState = { ...state, lastLogin: now };
        await md.writeState(s.maildropState);
      } else {
        s.maildropState = state;
      }
    } catch (err) {
      await md.release();
      throw err;
    }
  }
  s.maildrop = md;
  s.principal = principal;
  s.state = 'TRANSACTION';
  s.pendingUser = undefined;
  s.ctx.coordinator.succeed(s.remoteAddress, principal.user);
  s.resetIdle();
  const [n, size] = s.totals();
  s.log.info({ user: principal.user, mechanism, messages: n, octets: size, secure: s.secure }, 'login');
  s.ctx.onLogin?.(mechanism, 'ok');
  s.reply(`+OK ${s.text.loggedIn(n, size)}`);
}

/** A failed login: the same delay, the same reply and the same log line whatever the reason. */
export async function loginFailed(
  s: CommandSession,
  user: string | undefined,
  mechanism: string,
  reason: string,
): Promise<void> {
  s.authFailures++;
  s.pendingUser = undefined;
  const delay = await s.ctx.coordinator.fail(s.remoteAddress, user);
  // fail2ban: match `"msg":"authentication failed"` with `"remote":"<HOST>"`.
  s.log.warn({ user, mechanism, reason, delayMs: delay }, 'authentication failed');
  s.ctx.onLogin?.(mechanism, 'fail');
  if (delay > 0) {
    s.flush(); // replies queued before this one (a pipelined USER's +OK) are not held back by the delay
    await sleep(delay);
  }
  if (s.isClosed) return;
  s.replyError(new Pop3Error(s.text.authFailed, RespCode.Auth));
  if (s.authFailures >= s.ctx.limits.maxAuthFailures) {
    s.replyError(new Pop3Error(s.text.tooManyFailures));
    s.close('auth failures');
  }
}
