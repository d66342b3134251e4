/**
 * The TOML reading engine shared by `postern.toml` (config/) and `fetch.toml` (fetch/config.ts): parsing with
 * syntax errors as `file:line: message`, and finding the line of a key or table so that every later error can
 * name where the mistake is, too.
 */
import { parse, TomlError } from 'smol-toml';

export type TomlTable = Record<string, unknown>;

/** Parses `source`; a syntax error becomes `makeError("file:line: message")`. */
export function parseTomlDocument(source: string, file: string, makeError: (message: string) => Error): TomlTable {
  try {
    return parse(source) as TomlTable;
  } catch (e) {
    if (e instanceof TomlError) throw makeError(`${file}:${e.line}: ${e.message.split('\n')[0]}`);
    throw e;
  }
}

/**
 * The line of `key` inside `[table]` (or inside the `index`th `[[table]]`), of the table header itself when
 * `key` is null, or of a top-level key when `table` is null; undefined when not found.
 */
export function lineOf(source: string, table: string | null, key: string | null, index = 0): number | undefined {
  const lines = source.split(/\r?\n/);
  let current: string | null = null;
  let seen = -1;
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i].trim();
    const header = /^\[\[?\s*([^\]]+?)\s*\]\]?/.exec(l);
    if (header) {
      current = header[1];
      if (current === table && l.startsWith('[[')) seen++;
      if (key === null && current === table && (!l.startsWith('[[') || seen === index)) return i + 1;
      continue;
    }
    const inTable = table === null ? current === null : current === table && (seen === index || seen === -1);
    if (key !== null && inTable && new RegExp(`^"?${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}"?\\s*=`).test(l)) {
      return i + 1;
    }
  }
  return undefined;
}

/** `file:line` where the line is known, `file` otherwise. */
export function where(file: string, line: number | undefined): string {
  return line === undefined ? file : `${file}:${line}`;
}
