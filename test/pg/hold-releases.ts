/** A test hook on a PostgresStore: its lease releases held back, as a slow database would hold them. */
import type { PostgresStore } from '../../src/storage/postgres/store.ts';

/**
 * Holds back the store's lease releases (as a slow database would) until the returned function is called.
 * `held` resolves once a release is being held: it has left the store for the database (a login after that
 * goes in a statement, or batch, of its own, as a client that reconnects a moment later would).
 */
export function holdReleases(store: PostgresStore): (() => void) & { held: Promise<void> } {
  const pool = store.pool as unknown as { query: (...a: unknown[]) => Promise<unknown> };
  const real = pool.query.bind(pool);
  let open = () => {};
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  let holding = () => {};
  const held = new Promise<void>((resolve) => {
    holding = resolve;
  });
  // A release goes alone (its name) or in a batch with other sessions' statements (batch.ts: its items).
  const isRelease = (q: { name?: string; items?: { stmt: { name: string } }[] } | undefined) =>
    q?.name === 'postern_lease_drop' || (q?.items?.some((i) => i.stmt.name === 'postern_lease_drop') ?? false);
  pool.query = (...a: unknown[]) => {
    if (!isRelease(a[0] as Parameters<typeof isRelease>[0])) return real(...a);
    holding();
    return gate.then(() => real(...a));
  };
  return Object.assign(
    () => {
      pool.query = real;
      open();
    },
    { held },
  );
}
