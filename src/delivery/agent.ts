/**
 * The delivery pipeline shared by the LMTP listener and `postern deliver`: recipient lookup, quota checks,
 * trace headers, and one streaming pass that writes the message into every recipient's mailbox at once.
 *
 *     source ──► fan-out ──► TraceHeaders ──► QuotaLimiter ──► store.deliver(alice)   (tmp → fsync → new)
 *                   └──────► TraceHeaders ──► QuotaLimiter ──► store.deliver(bob)
 *
 * Nothing holds the whole message: the fan-out writes each chunk to every branch and reads the next chunk
 * only when all branches took it (the slowest disk sets the pace), so memory stays bounded by the streams'
 * buffers whatever the message size. A branch that fails (its quota, its disk) drops out and the others go
 * on; each recipient gets its own outcome, and 'delivered' only once the store said the copy is durable.
 */
import { PassThrough, pipeline, type Readable } from 'node:stream';
import type { Logger } from 'pino';
import type { Authenticator } from '../auth/types.ts';
import { TraceHeaders } from '../mail/headers.ts';
import { CrlfToLf } from '../mail/transforms.ts';
import { silentLogger } from '../observability/log.ts';
import type { Quota, QuotaSource } from '../storage/types.ts';
import { isStorageError, type MailboxStats, type MailStore, QuotaExceededError } from '../storage/types.ts';
import { hasLimit, NO_QUOTA, QuotaLimiter, quotaRefusal } from './quota.ts';
import { candidateUsers, DEFAULT_RECIPIENT_RULES, type RecipientRules } from './recipients.ts';

export interface Recipient {
  /** The address as the MTA gave it (it goes into Delivered-To). */
  readonly address: string;
  readonly user: string;
  readonly mailboxId: string;
  readonly quota: Quota;
}

/**
 * - delivered: durable in the mailbox;
 * - quota: refused by the recipient's quota (permanent or temporary is the caller's policy: `[quota] tempfail`);
 * - temp: a transient failure (store error, disk full, the sender went away): try again later;
 * - perm: the store refused for good (e.g. a mailbox id it cannot hold).
 */
export type DeliveryStatus = 'delivered' | 'quota' | 'temp' | 'perm';

export interface DeliveryOutcome {
  readonly recipient: Recipient;
  readonly status: DeliveryStatus;
  /** Human-readable; for replies and exit messages. */
  readonly reason: string;
  readonly id?: string;
  readonly size?: number;
}

export interface Envelope {
  /** Envelope sender; '' is the null sender (bounces); undefined when unknown (no Return-Path is added). */
  readonly sender?: string;
  readonly recipients: readonly Recipient[];
  /** Add Return-Path and Delivered-To (default true). */
  readonly traceHeaders?: boolean;
  /** Drop a leading mbox `From ` line (for messages piped by an MTA). */
  readonly stripFromLine?: boolean;
  /** Largest message accepted, in octets as received; a larger one is abandoned for every recipient. */
  readonly maxBytes?: number;
}

export interface DeliveryHooks {
  /** Once per recipient and message: the outcome and the octets stored (0 unless delivered). */
  onDelivery?(status: DeliveryStatus | 'nouser', octets: number): void;
}

export interface DeliveryAgentOptions {
  readonly store: MailStore;
  readonly users: Pick<Authenticator, 'lookup'>;
  readonly quotas?: QuotaSource;
  readonly rules?: RecipientRules;
  readonly logger?: Logger;
  readonly hooks?: DeliveryHooks;
}

interface Branch {
  readonly recipient: Recipient;
  readonly input: PassThrough;
  readonly limiter: QuotaLimiter | undefined;
  readonly result: Promise<DeliveryOutcome>;
  settled: boolean;
}

export class DeliveryAgent {
  readonly store: MailStore;
  private readonly users: Pick<Authenticator, 'lookup'>;
  private readonly quotas: QuotaSource | undefined;
  private readonly rules: RecipientRules;
  private readonly logger: Logger;
  private readonly hooks: DeliveryHooks;

  constructor(options: DeliveryAgentOptions) {
    this.store = options.store;
    this.users = options.users;
    this.quotas = options.quotas;
    this.rules = options.rules ?? DEFAULT_RECIPIENT_RULES;
    this.logger = options.logger ?? silentLogger;
    this.hooks = options.hooks ?? {};
  }

  /** The user an address delivers to, or null when there is none (LMTP 550 5.1.1, exit 67). */
  async resolve(address: string): Promise<Recipient | null> {
    for (const name of candidateUsers(address, this.rules)) {
      const principal = await this.users.lookup(name);
      if (principal) {
        const quota = (await this.quotas?.quotaOf(principal.user)) ?? NO_QUOTA;
        return { address, user: principal.user, mailboxId: principal.mailboxId, quota };
      }
    }
    return null;
  }

  /** Counts a refused unknown recipient (the caller answers it). */
  noUser(address: string): void {
    this.logger.info({ to: address }, 'delivery refused: no such user');
    this.hooks.onDelivery?.('nouser', 0);
  }

  /**
   * Before the message is read: refuses a recipient whose mailbox is full or cannot take a message of the
   * declared size (SIZE=, 0 when unknown). Null when the message may come.
   */
  async precheck(recipient: Recipient, declaredSize = 0): Promise<DeliveryOutcome | null> {
    if (!hasLimit(recipient.quota)) return null;
    let refused: DeliveryOutcome | null;
    try {
      const refusal = quotaRefusal(await this.store.stats(recipient.mailboxId), recipient.quota, declaredSize);
      refused = refusal === null ? null : { recipient, status: 'quota', reason: refusal };
    } catch (err) {
      refused = this.outcomeOfError(recipient, err, undefined);
    }
    if (refused !== null) {
      // Refused before the message came: counted and logged here, as deliver() does for the rest.
      this.hooks.onDelivery?.(refused.status, 0);
      this.logger.warn(
        { to: recipient.address, user: recipient.user, status: refused.status, reason: refused.reason },
        'delivery refused',
      );
    }
    return refused;
  }

  /**
   * Streams `message` into every recipient's mailbox; resolves with one outcome per recipient, in order,
   * once each copy is durable or has failed. Never rejects. Consumes the message in every case.
   */
  async deliver(message: AsyncIterable<Uint8Array | string>, envelope: Envelope): Promise<DeliveryOutcome[]> {
    const started = Date.now();
    const branches: (Branch | DeliveryOutcome)[] = await Promise.all(
      envelope.recipients.map((r) => this.openBranch(r, envelope)),
    );
    const live = branches.filter((b): b is Branch => 'input' in b);
    const maxBytes = envelope.maxBytes ?? Number.POSITIVE_INFINITY;
    let received = 0;
    let tooBig = false;
    let sourceError: unknown;
    try {
      // The source is always read to its end, even once every branch is gone: the LMTP reply comes only
      // after the end of DATA, and destroying smtp-server's stream would leave the client without one.
      for await (const chunk of message) {
        const buf =
          typeof chunk === 'string'
            ? Buffer.from(chunk, 'latin1')
            : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length);
        received += buf.length;
        if (received > maxBytes && !tooBig) {
          tooBig = true;
          for (const b of live) b.input.destroy(new Error(`message exceeds ${maxBytes} octets`));
        }
        if (tooBig) continue;
        const waits: Promise<void>[] = [];
        for (const b of live) {
          if (b.settled || b.input.destroyed) continue;
          if (!b.input.write(buf)) waits.push(drained(b));
        }
        if (waits.length > 0) await Promise.all(waits);
      }
    } catch (err) {
      sourceError = err;
    }
    for (const b of live) {
      if (sourceError !== undefined) b.input.destroy(new Error('message stream failed', { cause: sourceError }));
      else b.input.end();
    }
    const outcomes = (await Promise.all(branches.map((b) => ('input' in b ? b.result : b)))).map(
      (o): DeliveryOutcome =>
        tooBig && o.status !== 'delivered'
          ? { recipient: o.recipient, status: 'perm', reason: `message exceeds the maximum size of ${maxBytes} octets` }
          : o,
    );
    for (const o of outcomes) {
      this.hooks.onDelivery?.(o.status, o.status === 'delivered' ? (o.size ?? 0) : 0);
      const fields = {
        to: o.recipient.address,
        user: o.recipient.user,
        from: envelope.sender,
        status: o.status,
        id: o.id,
        size: o.size,
        ms: Date.now() - started,
      };
      // Per recipient at debug: LMTP logs one summary line per transaction, `postern deliver` its exit status.
      if (o.status === 'delivered') this.logger.debug(fields, 'delivered');
      else this.logger.warn({ ...fields, reason: o.reason }, 'delivery failed');
    }
    return outcomes;
  }

  private async openBranch(recipient: Recipient, envelope: Envelope): Promise<Branch | DeliveryOutcome> {
    let maxBytes = Number.POSITIVE_INFINITY;
    if (hasLimit(recipient.quota)) {
      let usage: MailboxStats;
      try {
        usage = await this.store.stats(recipient.mailboxId);
      } catch (err) {
        return this.outcomeOfError(recipient, err, undefined);
      }
      const refusal = quotaRefusal(usage, recipient.quota);
      if (refusal !== null) return { recipient, status: 'quota', reason: refusal };
      if (recipient.quota.bytes > 0) maxBytes = recipient.quota.bytes - usage.bytes;
    }
    const input = new PassThrough();
    input.on('error', () => {}); // its failure is reported through the branch's outcome
    const addHeaders = envelope.traceHeaders !== false;
    const headers = new TraceHeaders({
      returnPath: addHeaders ? envelope.sender : undefined,
      deliveredTo: addHeaders ? recipient.address : undefined,
      stripFromLine: envelope.stripFromLine,
    });
    const limiter = Number.isFinite(maxBytes) ? new QuotaLimiter(maxBytes) : undefined;
    // Every delivery path stores LF line endings, as Postfix's local(8) and virtual(8), Dovecot and Maildir
    // readers expect: LMTP's CRLF (RFC 5321 wire form) and a CRLF message piped to `postern deliver` alike.
    // POP3 puts the CRs back on the way out, and sizes count them either way.
    const lf = new CrlfToLf();
    const tail: Readable = limiter
      ? pipeline(input, lf, headers, limiter, () => {})
      : pipeline(input, lf, headers, () => {});
    const branch: Branch = {
      recipient,
      input,
      limiter,
      settled: false,
      result: this.store
        .deliver(recipient.mailboxId, tail, {
          sender: envelope.sender,
          // Stores that can (PostgreSQL) check it again in the transaction that inserts: a hard limit.
          quota: hasLimit(recipient.quota) ? recipient.quota : undefined,
        })
        .then(
          (r): DeliveryOutcome => ({ recipient, status: 'delivered', reason: 'delivered', id: r.id, size: r.size }),
          (err: unknown) => {
            tail.destroy();
            return this.outcomeOfError(recipient, err, limiter);
          },
        ),
    };
    void branch.result.then(() => {
      branch.settled = true;
      input.emit('branch-settled');
    });
    return branch;
  }

  private outcomeOfError(recipient: Recipient, err: unknown, limiter: QuotaLimiter | undefined): DeliveryOutcome {
    if (limiter?.exceeded) {
      return {
        recipient,
        status: 'quota',
        reason: `message does not fit in the quota (${limiter.maxBytes} octets left)`,
      };
    }
    const reason = err instanceof Error ? err.message : String(err);
    if (err instanceof QuotaExceededError) return { recipient, status: 'quota', reason };
    // A store that says 'quota' means the disk or the file system's own quota is full, not this user's
    // Postern quota: that passes when an operator acts, so it is temporary.
    if (isStorageError(err, 'perm')) return { recipient, status: 'perm', reason };
    return { recipient, status: 'temp', reason };
  }
}

/** Resolves when the branch can take more, or when it is finished (so a dead branch never stalls the rest). */
function drained(b: Branch): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      b.input.off('drain', done);
      b.input.off('close', done);
      b.input.off('branch-settled', done);
      resolve();
    };
    b.input.on('drain', done);
    b.input.on('close', done);
    b.input.on('branch-settled', done);
    if (b.settled || b.input.destroyed) done();
  });
}
