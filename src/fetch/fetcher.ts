/**
 * One account's fetch run. The order of steps is the data-safety argument (design.md §5 rule 3):
 *
 *   1. settle deliveries a crashed run left pending (journal + the mailbox itself say whether they completed);
 *   2. LIST + UIDL; new = UIDLs not in the state file;
 *   3. for each new message: journal "pending" → deliver (fsynced) → journal "done" (fsynced) → DELE if deleting;
 *   4. DELE messages delivered by earlier runs that are now due (delete mode, or keep_days passed);
 *   5. QUIT, which is when the server deletes (RFC 1939 §6). A crash or Ctrl-C anywhere before it deletes nothing,
 *      and every message delivered so far is already recorded, so the next run neither loses nor repeats one.
 */
import { readFileSync } from 'node:fs';
import { Pop3Client } from '../client/client.ts';
import type { DebugFn } from '../client/connection.ts';
import { Pop3ClientError } from '../client/errors.ts';
import type { FetchAccount } from './config.ts';
import { createDelivery } from './deliver.ts';
import type { AccountResult, Progress } from './progress.ts';
import { UidlState } from './state.ts';

export interface FetchRunOptions {
  dryRun: boolean;
  progress: Progress;
  /** Resolves the account's password (command, env or prompt); called only when the server asks for one. */
  password: (account: FetchAccount) => Promise<string>;
  signal?: AbortSignal;
  debug?: DebugFn;
  /** Override "now" (tests of keep_days). */
  now?: () => number;
}

const DAY_MS = 24 * 60 * 60 * 1000;

export async function fetchAccount(account: FetchAccount, opts: FetchRunOptions): Promise<AccountResult> {
  const started = Date.now();
  const now = opts.now ?? Date.now;
  const result: AccountResult = {
    account: account.name,
    onServer: 0,
    fetched: 0,
    fetchedBytes: 0,
    skipped: 0,
    deleted: 0,
    elapsedMs: 0,
    dryRun: opts.dryRun,
  };
  let state: UidlState | undefined;
  let client: Pop3Client | undefined;
  try {
    state = UidlState.open(account.stateFile, `${account.user}@${account.host}`);
    const delivery = createDelivery(account.deliver);

    // 1. A previous run died between "pending" and "done": ask the mailbox what happened.
    for (const [uidl, intent] of [...state.pending]) {
      if (await delivery.recover(intent)) state.commit(uidl);
      else state.abandon(uidl);
    }

    client = await Pop3Client.connect({
      host: account.host,
      port: account.port,
      tls: account.tls,
      timeoutMs: account.timeoutMs,
      signal: opts.signal,
      allowInsecureAuth: account.allowInsecureAuth,
      tlsOptions: account.caFile ? { ca: readFileSync(account.caFile) } : undefined,
      pinSha256: account.pinSha256,
      debug: opts.debug,
      auth: {
        user: account.user,
        password: () => opts.password(account),
        mechanism: account.auth === 'auto' ? undefined : account.auth,
      },
    });

    // 2. What is there, and what is new.
    const listed = [];
    for await (const m of client.messages()) listed.push(m);
    result.onServer = listed.length;
    const fresh = listed.filter((m) => !state?.has(m.uidl));
    const tooBig = account.maxSize === undefined ? [] : fresh.filter((m) => m.size > (account.maxSize ?? 0));
    const toFetch = fresh.filter((m) => !tooBig.includes(m));
    const dueForDeletion = (uidl: string): boolean => {
      const at = state?.deliveredAt(uidl);
      if (at === undefined) return false;
      if (!account.keep) return true;
      return account.keepDays !== undefined && now() - at >= account.keepDays * DAY_MS;
    };

    if (opts.dryRun) {
      for (const m of toFetch) opts.progress.wouldFetch(account.name, m);
      for (const m of tooBig) opts.progress.skipped(account.name, m, `larger than ${account.maxSize} octets`);
      result.fetched = toFetch.length;
      result.fetchedBytes = toFetch.reduce((a, m) => a + m.size, 0);
      result.skipped = tooBig.length;
      // Would be deleted: those already delivered and due, plus (in delete mode) those fetched now.
      result.deleted = listed.filter((m) => dueForDeletion(m.uidl)).length + (account.keep ? 0 : toFetch.length);
      await client.quit();
      return result;
    }

    for (const m of tooBig) opts.progress.skipped(account.name, m, `larger than ${account.maxSize} octets`);
    result.skipped = tooBig.length;
    opts.progress.start(
      account.name,
      toFetch.length,
      toFetch.reduce((a, m) => a + m.size, 0),
    );

    // 3. Fetch, deliver, record; DELE goes out right behind (pipelined when the server allows it).
    const deletions: Promise<void>[] = [];
    const marked = new Set<string>();
    let failure: unknown;
    for (const m of toFetch) {
      let begun = false;
      try {
        const stream = await client.retrieve(m.number);
        await delivery.deliver(stream, { uidl: m.uidl, size: m.size, account: account.name }, async (intent) => {
          state?.begin(m.uidl, intent);
          begun = true;
        });
      } catch (err) {
        if (begun) {
          // deliver() cleans up after itself (tmp file removed, mbox cut back); an MDA's failure is its word.
          state.abandon(m.uidl);
        }
        failure = err;
        break;
      }
      state.commit(m.uidl, now());
      result.fetched++;
      result.fetchedBytes += m.size;
      opts.progress.message(account.name, m);
      if (!account.keep) {
        deletions.push(client.delete(m.number));
        marked.add(m.uidl);
      }
    }

    // 4. Messages delivered by earlier runs that are now due for deletion.
    if (failure === undefined) {
      for (const m of listed) {
        if (marked.has(m.uidl) || !dueForDeletion(m.uidl)) continue;
        deletions.push(client.delete(m.number));
        marked.add(m.uidl);
      }
    }

    // 5. QUIT commits the deletions. Even after a delivery failure, the messages delivered before it may go.
    let quitOk = false;
    try {
      await Promise.all(deletions);
      await client.quit();
      quitOk = true;
      result.deleted = marked.size;
    } catch (err) {
      failure ??= err;
      client.destroy();
    }
    // Forget UIDLs no longer on the server: gone before this run, or deleted by its QUIT.
    const stillThere = new Set(listed.map((m) => m.uidl));
    if (quitOk) for (const u of marked) stillThere.delete(u);
    state.compact(stillThere);
    if (failure !== undefined) throw failure;
    return result;
  } catch (err) {
    client?.destroy();
    result.error = describeError(err);
    return result;
  } finally {
    try {
      state?.close();
    } catch {}
    result.elapsedMs = Date.now() - started;
    opts.progress.finish(result);
  }
}

function describeError(err: unknown): string {
  if (err instanceof Pop3ClientError) return `${err.message} (${err.code})`;
  return err instanceof Error ? err.message : String(err);
}
