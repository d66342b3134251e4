import { Writable } from 'node:stream';

/** A Writable that keeps what is written to it; `text()` is all of it so far (a CLI's stdout or stderr). */
export function textSink(): Writable & { text: () => string } {
  const chunks: string[] = [];
  const w = new Writable({
    write(chunk, _enc, cb) {
      chunks.push(String(chunk));
      cb();
    },
  });
  return Object.assign(w, { text: () => chunks.join('') });
}
