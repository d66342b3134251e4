/**
 * One account's fetch run. The order of steps is the data-safety argument (design.md §5 rule 3):
 *
 *   1. settle deliveries a crashed run left pending (journal + the mailbox itself say whether they completed);
 *   2. LIST + UIDL; new = UIDLs not in the state file;
 *   3. RETR of every new message, pipelined; the bodies are stored as they arrive, in arrival order, in groups:
 *        journal "pending" for the group (one write, one fsync) → each message written and fsynced →
 *        the group made visible (Maildir: renames + one directory fsync) → journal "done" (one write, one
 *        fsync) → DELE for the group's messages, if deleting.
 *      A message is thus marked for deletion only once its copy and its record are durable;
 *   4. DELE messages delivered by earlier runs that are now due (delete mode, or keep_days passed);
 *   5. QUIT, which is when the server deletes (RFC 1939 §6). A crash or Ctrl-C anywhere before it deletes nothing,
 *      and every message delivered so far is already recorded, so the next run neither loses nor repeats one.
 *
 * A hostile or broken server cannot fill the disk: a message is read only up to max_size (when set) and up to
 * twice its listed size plus 64 KiB; beyond that the connection is closed and the partial copy removed.
 */
import { readFileSync } from 'node:fs';
import { Pop3Client } from '../client/client.ts';
import { Pop3ClientError, Pop3ErrorCode } from '../client/errors.ts';
import type { DebugFn } from '../client/pipeline.ts';
import type { FetchAccount } from './config.ts';
import { createDelivery, type Delivery } from './deliver.ts';
import { GroupSink, type Listed } from './group-sink.ts';
import type { AccountResult, Progress } from './progress.ts';
import { UidlState } from './state.ts';

export interface FetchRunOptions {
  dryRun: boolean;
  /** Status only (--check): count new messages and their size; download, record and delete nothing. */
  check?: boolean;
  progress: Progress;
  /** Resolves the account's password (command, env or prompt); called only when the server asks for one. */
  password: (account: FetchAccount) => Promise<string>;
  signal?: AbortSignal;
  debug?: DebugFn;
  /** Override "now" (tests of keep_days). */
  now?: () => number;
}

const DAY_MS = 24 * 60 * 60 * 1000;
/** Commands in flight while downloading (RFC 2449 §6.6 PIPELINING; one at a time when not advertised). */
const FETCH_PIPELINE_WINDOW = 64;

export async function fetchAccount(account: FetchAccount, opts: FetchRunOptions): Promise<AccountResult> {
  const started = Date.now();
  const now = opts.now ?? Date.now;
  const result: AccountResult = {
    account: account.name,
    onServer: undefined,
    fetched: 0,
    fetchedBytes: 0,
    skipped: 0,
    deleted: 0,
    elapsedMs: 0,
    dryRun: opts.dryRun,
    check: opts.check,
    stage: 'state',
  };
  let state: UidlState | undefined;
  let client: Pop3Client | undefined;
  let delivery: Delivery | undefined;
  try {
    const who = `${account.user}@${account.host}`;
    if (account.legacyStateFile) UidlState.migrate(account.legacyStateFile, account.stateFile, who);
    state = UidlState.open(account.stateFile, who);
    delivery = createDelivery(account.deliver);

    // 1. A previous run died between "pending" and "done": ask the mailbox what happened.
    if (state.pending.size > 0) {
      const pending = [...state.pending];
      const ok = await delivery.recover(pending.map(([, intent]) => intent));
      state.settle(
        pending.filter((_, i) => ok[i]).map(([u]) => u),
        now(),
        pending.filter((_, i) => !ok[i]).map(([u]) => u),
      );
    }

    result.stage = 'connect';
    client = await Pop3Client.connect({
      host: account.host,
      port: account.port,
      tls: account.tls,
      timeoutMs: account.timeoutMs,
      signal: opts.signal,
      allowInsecureAuth: account.allowInsecureAuth,
      tlsOptions: account.caFile ? { ca: readFileSync(account.caFile) } : undefined,
      pinSha256: account.pinSha256,
      pipelining: FETCH_PIPELINE_WINDOW,
      debug: opts.debug,
    });
    result.stage = 'login';
    await client.login({
      user: account.user,
      password: () => opts.password(account),
      mechanism: account.auth === 'auto' ? undefined : account.auth,
    });

    // 2. What is there, and what is new (a UIDL listed twice is fetched once).
    result.stage = 'list';
    const listed: Listed[] = await client.messageList();
    result.onServer = listed.length;
    const wanted = new Set<string>();
    const fresh = listed.filter((m) => {
      if (state?.has(m.uidl) || wanted.has(m.uidl)) return false;
      wanted.add(m.uidl);
      return true;
    });
    const maxSize = account.maxSize;
    const tooBig = maxSize === undefined ? [] : fresh.filter((m) => m.size > maxSize);
    const toFetch = maxSize === undefined ? fresh : fresh.filter((m) => m.size <= maxSize);
    const dueForDeletion = (uidl: string): boolean => {
      const at = state?.deliveredAt(uidl);
      if (at === undefined) return false;
      if (!account.keep) return true;
      return account.keepDays !== undefined && now() - at >= account.keepDays * DAY_MS;
    };

    if (opts.dryRun || opts.check) {
      if (opts.dryRun) for (const m of toFetch) opts.progress.wouldFetch(account.name, m);
      for (const m of tooBig) opts.progress.skipped(account.name, m, `larger than ${maxSize} octets`);
      result.fetched = toFetch.length;
      result.fetchedBytes = toFetch.reduce((a, m) => a + m.size, 0);
      result.skipped = tooBig.length;
      // Would be deleted: those already delivered and due, plus (in delete mode) those fetched now.
      result.deleted = listed.filter((m) => dueForDeletion(m.uidl)).length + (account.keep ? 0 : toFetch.length);
      result.stage = 'quit';
      await client.quit();
      result.stage = 'done';
      return result;
    }

    for (const m of tooBig) opts.progress.skipped(account.name, m, `larger than ${maxSize} octets`);
    result.skipped = tooBig.length;
    opts.progress.start(
      account.name,
      toFetch.length,
      toFetch.reduce((a, m) => a + m.size, 0),
    );

    // 3. Download, store and record in groups; DELE goes out right behind each group.
    result.stage = 'fetch';
    const deletions: Promise<void>[] = [];
    const marked = new Set<string>();
    const dele = (msgs: readonly Listed[]) => {
      if (msgs.length === 0 || !client) return;
      const p = client.deleteEach(msgs.map((m) => m.number));
      p.catch(() => {}); // awaited below; a failure here must not go unhandled meanwhile
      deletions.push(p);
      for (const m of msgs) marked.add(m.uidl);
    };
    let failure: unknown;
    if (toFetch.length > 0) {
      await delivery.prepare();
      const sink = new GroupSink(account, toFetch, delivery, state, opts.progress, now, (group) => {
        result.fetched += group.length;
        for (const m of group) result.fetchedBytes += m.size;
        if (!account.keep) dele(group);
      });
      try {
        await client.retrieveEach(
          toFetch.map((m) => m.number),
          sink,
        );
      } catch (err) {
        failure = sink.failure ?? err;
      }
      // Whatever happened, the messages stored completely are committed and recorded; a partial one is dropped.
      try {
        sink.salvage();
      } catch (err) {
        failure ??= err;
      }
    }

    // 4. Messages delivered by earlier runs that are now due for deletion.
    if (failure === undefined) {
      dele(listed.filter((m) => !marked.has(m.uidl) && dueForDeletion(m.uidl)));
    }

    // 5. QUIT commits the deletions. Even after a delivery failure, the messages delivered before it may go.
    let quitOk = false;
    try {
      result.stage = 'quit';
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
    if (failure !== undefined) {
      result.stage = 'fetch';
      throw failure;
    }
    result.stage = 'done';
    return result;
  } catch (err) {
    client?.destroy();
    result.error = describeError(err);
    result.errorCode = err instanceof Pop3ClientError ? err.code : undefined;
    return result;
  } finally {
    try {
      await delivery?.close();
    } catch {}
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

export { Pop3ErrorCode };
