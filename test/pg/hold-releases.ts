/** A test hook on a PostgresStore: its lease releases held back, as a slow database would hold them. */
import type { PostgresStore } from '../../src/storage/postgres/store.ts';

/** Holds back the store's lease releases (as a slow database would) until the returned function is called. */
export function holdReleases(store: PostgresStore): () => void {
  const pool = store.pool as unknown as { query: (...a: unknown[]) => Promise<unknown> };
  const real = pool.query.bind(pool);
  let open = () => {};
  const gate = new Promise<void>((resolve) => {
    open = resolve;
  });
  pool.query = (...a: unknown[]) =>
    (a[0] as { name?: string } | undefined)?.name === 'postern_lease_drop' ? gate.then(() => real(...a)) : real(...a);
  return () => {
    pool.query = real;
    open();
  };
}
