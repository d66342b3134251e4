/**
 * RFC 2449 LOGIN-DELAY and EXPIRE as plain functions, shared by the session (enforced at login and QUIT) and
 * `postern mailbox expire` (a cleanup for users who do not come back).
 */
import type { UserSettings } from '../auth/user-settings.ts';
import type { MaildropState, MessageInfo } from '../storage/types.ts';
import type { Policy } from './options.ts';

export interface UserPolicy {
  /** Minimum seconds between two logins; 0 for none. */
  readonly loginDelay: number;
  /** Days a message is kept after its first retrieval, or never. */
  readonly expire: number | 'never';
}

const DAY_MS = 86_400_000;

/**
 * The policy for a user: the server's defaults, overridden by the user's `login_delay=` and `expire=` (parsed
 * where the user was read; a malformed value was reported there and is absent here).
 */
export function userPolicy(defaults: Policy, settings: UserSettings | undefined): UserPolicy {
  return {
    loginDelay: settings?.loginDelaySeconds ?? defaults.loginDelaySeconds,
    expire: settings?.expireDays ?? defaults.expireDays,
  };
}

/**
 * Applies EXPIRE to a maildrop: which messages (by index) are past their retention, and the first-retrieval
 * times to keep for the others. `retrievedNow` are messages retrieved in the current session (their clock
 * starts now); `doomed` are messages already to be deleted (their times are dropped). A message never
 * retrieved never expires.
 */
export function applyExpire(
  messages: readonly MessageInfo[],
  state: MaildropState,
  days: number,
  now: number,
  retrievedNow: ReadonlySet<number> = new Set(),
  doomed: ReadonlySet<number> = new Set(),
): { expired: Set<number>; retrieved: Record<string, number> } {
  const before = state.retrieved ?? {};
  const expired = new Set<number>();
  const retrieved: Record<string, number> = {};
  for (const [i, m] of messages.entries()) {
    const first = before[m.id] ?? (retrievedNow.has(i) ? now : undefined);
    if (first === undefined) continue;
    if (now - first >= days * DAY_MS) expired.add(i);
    else if (!doomed.has(i)) retrieved[m.id] = first;
  }
  return { expired, retrieved };
}
