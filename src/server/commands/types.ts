import type { ParsedCommand } from '../../protocol/command.ts';
import type { Session, SessionState } from '../session.ts';

/** One verb: the states it is valid in (checked in one place, Session.execute) and what it does. */
export interface CommandSpec {
  readonly states: readonly SessionState[];
  run(session: Session, cmd: ParsedCommand): void | Promise<void>;
}

export const AUTHORIZATION: readonly SessionState[] = ['AUTHORIZATION'];
export const TRANSACTION: readonly SessionState[] = ['TRANSACTION'];
export const BOTH: readonly SessionState[] = ['AUTHORIZATION', 'TRANSACTION'];
