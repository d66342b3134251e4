/**
 * State that must be shared by every process serving the same users: connection counts per client address
 * and the failed-login penalty (per address and per user, gating the next verification: throttle.ts). One process keeps it in memory (LocalCoordinator); with `server.workers` > 1
 * the cluster primary keeps it and workers ask over IPC (ClusterCoordinator), so a client cannot multiply
 * its connection allowance or reset its penalty by landing on another worker.
 *
 * Maildrop locks and LOGIN-DELAY stamps do not live here: they are kept by the store, which already is what
 * all processes (and, with a shared store, all machines) have in common.
 */
import cluster, { type Worker } from 'node:cluster';
import { LoginThrottle } from './throttle.ts';

export interface Coordinator {
  /** Counts a new connection from `address`; false (and nothing counted) when over `limit`. */
  acquire(address: string, limit: number): Promise<boolean>;
  release(address: string): void;
  /**
   * How long a verification from `address` (for `user`, when known) must wait first: the failed-login
   * penalty gates the next verification, whatever the client did since (throttle.ts).
   */
  gate(address: string, user?: string): Promise<number>;
  /** Records a failed login and returns the delay to apply before answering it. */
  fail(address: string, user?: string): Promise<number>;
  succeed(address: string, user?: string): void;
}

export interface ThrottleSettings {
  readonly baseMs: number;
  readonly maxMs: number;
}

/** Per-address connection counts and login penalties, in this process. */
export class LocalCoordinator implements Coordinator {
  private readonly counts = new Map<string, number>();
  private readonly throttle: LoginThrottle;

  constructor(settings: ThrottleSettings) {
    this.throttle = new LoginThrottle(settings.baseMs, settings.maxMs);
  }

  acquireSync(address: string, limit: number): boolean {
    const n = this.counts.get(address) ?? 0;
    if (n >= limit) return false;
    this.counts.set(address, n + 1);
    return true;
  }

  async acquire(address: string, limit: number): Promise<boolean> {
    return this.acquireSync(address, limit);
  }

  release(address: string): void {
    const n = (this.counts.get(address) ?? 1) - 1;
    if (n <= 0) this.counts.delete(address);
    else this.counts.set(address, n);
  }

  async gate(address: string, user?: string): Promise<number> {
    return this.throttle.wait(address, user);
  }

  async fail(address: string, user?: string): Promise<number> {
    return this.throttle.fail(address, user);
  }

  succeed(address: string, user?: string): void {
    this.throttle.succeed(address, user);
  }
}

type Request =
  | { postern: 'coord'; id: number; op: 'acquire'; address: string; limit: number }
  | { postern: 'coord'; id: number; op: 'release'; address: string }
  | { postern: 'coord'; id: number; op: 'gate'; address: string; user?: string }
  | { postern: 'coord'; id: number; op: 'fail'; address: string; user?: string }
  | { postern: 'coord'; id: number; op: 'succeed'; address: string; user?: string };
/** Omit over each member of a union. */
type DistOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Reply = { postern: 'coord-reply'; id: number; value: boolean | number };

/** How long a worker waits for the primary before deciding alone (fail open on counts, closed on delay). */
const IPC_TIMEOUT_MS = 2_000;

/** The worker side: asks the cluster primary. */
export class ClusterCoordinator implements Coordinator {
  private nextId = 1;
  private readonly waiting = new Map<number, (v: boolean | number) => void>();

  constructor(private readonly fallback: ThrottleSettings) {
    process.on('message', (m: unknown) => {
      const r = m as Reply;
      if (r && r.postern === 'coord-reply') {
        this.waiting.get(r.id)?.(r.value);
        this.waiting.delete(r.id);
      }
    });
  }

  private ask(req: DistOmit<Request, 'id' | 'postern'>, otherwise: boolean | number): Promise<boolean | number> {
    const id = this.nextId++;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.waiting.delete(id);
        resolve(otherwise);
      }, IPC_TIMEOUT_MS);
      t.unref();
      this.waiting.set(id, (v) => {
        clearTimeout(t);
        resolve(v);
      });
      process.send?.({ ...req, id, postern: 'coord' });
    });
  }

  async acquire(address: string, limit: number): Promise<boolean> {
    return (await this.ask({ op: 'acquire', address, limit }, true)) === true;
  }

  release(address: string): void {
    process.send?.({ op: 'release', address, id: 0, postern: 'coord' });
  }

  /** Without an answer from the primary, a verification waits the base penalty (neither free nor locked out). */
  async gate(address: string, user?: string): Promise<number> {
    return Number(await this.ask({ op: 'gate', address, user }, this.fallback.baseMs));
  }

  async fail(address: string, user?: string): Promise<number> {
    return Number(await this.ask({ op: 'fail', address, user }, this.fallback.maxMs));
  }

  succeed(address: string, user?: string): void {
    process.send?.({ op: 'succeed', address, user, id: 0, postern: 'coord' });
  }
}

/** The primary side: answers workers from one LocalCoordinator; forgets a dead worker's connections. */
export function serveCoordinator(settings: ThrottleSettings): void {
  const local = new LocalCoordinator(settings);
  const held = new Map<Worker, Map<string, number>>();
  const onMessage = (worker: Worker, m: unknown) => {
    const r = m as Request;
    if (r?.postern !== 'coord') return;
    const mine = held.get(worker) ?? new Map<string, number>();
    held.set(worker, mine);
    const reply = (value: boolean | number) => worker.send({ postern: 'coord-reply', id: r.id, value } satisfies Reply);
    switch (r.op) {
      case 'acquire': {
        const ok = local.acquireSync(r.address, r.limit);
        if (ok) mine.set(r.address, (mine.get(r.address) ?? 0) + 1);
        reply(ok);
        break;
      }
      case 'release': {
        const n = mine.get(r.address) ?? 0;
        if (n > 0) {
          local.release(r.address);
          if (n === 1) mine.delete(r.address);
          else mine.set(r.address, n - 1);
        }
        break;
      }
      case 'gate':
        void local.gate(r.address, r.user).then(reply);
        break;
      case 'fail':
        void local.fail(r.address, r.user).then(reply);
        break;
      case 'succeed':
        local.succeed(r.address, r.user);
        break;
    }
  };
  cluster.on('message', onMessage);
  cluster.on('exit', (worker) => {
    for (const [address, n] of held.get(worker) ?? []) for (let i = 0; i < n; i++) local.release(address);
    held.delete(worker);
  });
}
