// Preloaded into the Postern servers the bench starts (NODE_OPTIONS="--expose-gc --import=…", bench/servers.ts):
// SIGUSR2 makes the server collect its garbage, so that the memory measurement (bench/run.ts, measureIdle)
// reads what the open connections hold, not what the logins before the reading left for a later collection.
// Nothing else changes; Postern itself does not use SIGUSR2.
if (typeof globalThis.gc === 'function') {
  const gc = globalThis.gc;
  process.on('SIGUSR2', () => {
    gc();
    gc(); // a second pass frees what the first one's finalizers released
  });
}
