// Preloaded into a Postern server by bench/pg-memory.ts (NODE_OPTIONS="--import=…"): samples
// process.memoryUsage() every 5 ms and keeps the maxima of each field; SIGUSR2 writes them (JSON, one line)
// to $POSTERN_MEM_PROBE and starts over. With $POSTERN_MEM_HEAPPROF (a folder), V8's sampling heap profiler
// also runs between two signals, counting objects already collected too (what was allocated, not what is
// left), and each period's profile is written there as N.heapprofile (Chrome DevTools, or summarised by
// bench/pg-memory.ts). Measurement only: Postern itself neither loads nor needs it.
import { appendFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';

const out = process.env.POSTERN_MEM_PROBE;
const profDir = process.env.POSTERN_MEM_HEAPPROF;
if (out) {
  let max = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
  const sample = () => {
    const m = process.memoryUsage();
    for (const k of Object.keys(max)) if (m[k] > max[k]) max[k] = m[k];
  };
  setInterval(sample, 5).unref();
  let session;
  let period = 0;
  const start = () =>
    session.post('HeapProfiler.startSampling', {
      samplingInterval: 16384,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    });
  if (profDir) {
    session = new Session();
    session.connect();
    start();
  }
  process.on('SIGUSR2', () => {
    sample();
    appendFileSync(out, `${JSON.stringify({ now: process.memoryUsage(), max })}\n`);
    max = { rss: 0, heapTotal: 0, heapUsed: 0, external: 0, arrayBuffers: 0 };
    if (session) {
      const n = period++;
      session.post('HeapProfiler.stopSampling', (err, r) => {
        if (!err) writeFileSync(join(profDir, `${n}.heapprofile`), JSON.stringify(r.profile));
        start();
      });
    }
  });
}
