/** Users-file fixtures shared by the auth and CLI tests. */

/** A users file whose `lines` are UTF-8 text, except that line `at` (1-based) is `josé` in Latin-1. */
export function withLatin1Line(lines: readonly string[], at: number): Buffer {
  const latin1 = Buffer.from('jos\xe9:{PLAIN}hunter2', 'latin1');
  const parts = lines.map((l) => Buffer.from(l));
  parts.splice(at - 1, 0, latin1);
  return Buffer.concat(parts.flatMap((p) => [p, Buffer.from('\n')]));
}
