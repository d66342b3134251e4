/**
 * RFC 1939 §5/§6 QUIT. In AUTHORIZATION it just closes. In TRANSACTION the session enters UPDATE, commits the
 * deletions durably, and only then says +OK; a failed commit answers -ERR [SYS/TEMP] and deletes nothing more
 * than the store managed to make durable. RFC 2449 EXPIRE is applied here too.
 */
import { Pop3Error, RespCode } from '../../protocol/errors.ts';
import type { MaildropState } from '../../storage/types.ts';
import { applyExpire } from '../policy.ts';
import { BOTH, type CommandSession, type CommandSpec } from './types.ts';

export const quit: CommandSpec = {
  states: BOTH,
  async run(s) {
    if (s.state === 'TRANSACTION') return update(s);
    s.reply(`+OK ${s.text.bye}`);
    s.close('quit');
  },
};

/** The UPDATE state (RFC 1939 §6): delete what was marked (and what EXPIRE says), release, close. */
async function update(s: CommandSession): Promise<void> {
  s.state = 'UPDATE';
  const md = s.requireMaildrop();
  const doomed = new Set(s.deleted);
  const expire = s.policyFor(s.principal).expire;
  let nextState: MaildropState | undefined;
  if (expire !== 'never') {
    // RFC 2449 EXPIRE: a message is kept `expire` days after it was first retrieved; 0 means it goes at the
    // QUIT of the session that retrieved it. Messages never retrieved are never expired.
    const { expired, retrieved } = applyExpire(
      md.messages,
      s.maildropState ?? {},
      expire,
      Date.now(),
      s.retrieved,
      s.deleted,
    );
    for (const i of expired) doomed.add(i);
    nextState = { ...s.maildropState, retrieved };
  }
  const ids = [...doomed].map((i) => md.messages[i].id);
  try {
    if (ids.length > 0) await md.commit(ids);
    if (nextState) {
      await md.writeState(nextState).catch((err: unknown) => {
        // Bookkeeping only: the deletions above are already durable, so QUIT still succeeds.
        s.log.warn({ err: (err as Error).message }, 'could not record retrieval times');
      });
    }
    s.counters.deleted = ids.length;
    const left = md.messages.length - ids.length;
    // Drop the lock before the +OK, so a client that reconnects at once never meets its own old session.
    s.maildrop = undefined;
    await md.release();
    s.reply(`+OK ${s.text.loggingOut(ids.length, left)}`);
  } catch (err) {
    s.log.error({ err: (err as Error).message, count: ids.length }, 'commit failed');
    s.replyError(new Pop3Error(s.text.commitFailed, RespCode.SysTemp));
  }
  s.close('quit');
}
