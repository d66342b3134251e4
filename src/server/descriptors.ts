/**
 * File descriptors are the one resource every listener of the process shares: when they run out, the kernel
 * refuses accept() and a client is closed without a byte (issue 13 #10: 20 000 idle connections to the
 * metrics port did that to POP3 and LMTP). So the POP3 listener counts its sessions against a budget: the
 * process's descriptor limit, minus what is open when it starts, minus what the other listeners may hold
 * (the metrics cap, LMTP's max_connections), minus a reserve. The reserve keeps room to accept a connection
 * beyond the budget and answer it `-ERR [SYS/TEMP]`, and to open lock files and messages for the sessions
 * already in.
 *
 * Linux only (/proc); elsewhere no budget is applied and max_connections alone limits sessions.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Descriptors kept free beyond the session budget: -ERR to refused clients, lock files, messages, logs. */
export const DESCRIPTOR_RESERVE = 128;

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start), if known. */
export function descriptorLimit(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const soft = line?.split(/\s{2,}/)[1];
    return soft !== undefined && /^\d+$/.test(soft) ? Number(soft) : undefined;
  } catch {
    return undefined;
  }
}

/** Descriptors open in this process now, if known. */
export function openDescriptors(): number | undefined {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return undefined;
  }
}

/**
 * How many POP3 sessions fit: `maxConnections`, or fewer when the descriptor limit leaves less room after
 * what is open, what `others` may hold and the reserve (at least 1, so a misconfigured process still
 * answers). `limited` says whether the descriptor limit decided.
 */
export function sessionBudget(maxConnections: number, others: number): { sessions: number; limited: boolean } {
  const limit = descriptorLimit();
  const open = openDescriptors();
  if (limit === undefined || open === undefined) return { sessions: maxConnections, limited: false };
  const room = Math.max(1, limit - open - others - DESCRIPTOR_RESERVE);
  return room < maxConnections ? { sessions: room, limited: true } : { sessions: maxConnections, limited: false };
}
