/**
 * Typed schemas for TOML files (postern.toml in config/, fetch.toml in fetch/): a table's keys are declared
 * once, with the field builders below, and both the checked values and their TypeScript types come from that
 * declaration. `Section<typeof fields>` is the type of a checked table, so a reader of the file never casts,
 * and a key added to a schema is a new property the reader must handle (see `allHandled`).
 */
import { lineOf, where } from './engine.ts';

interface Base {
  readonly doc: string;
  /** No default, and the key must be given (the error names the table's line). */
  readonly required?: true;
}
export interface StringField extends Base {
  readonly type: 'string';
  readonly default?: string;
  readonly enum?: readonly string[];
  /** '' is refused. */
  readonly nonEmpty?: true;
}
export interface BooleanField extends Base {
  readonly type: 'boolean';
  readonly default: boolean;
}
export interface NumberField extends Base {
  readonly type: 'integer' | 'number';
  readonly default?: number;
  readonly min?: number;
  readonly max?: number;
}
export interface StringListField extends Base {
  readonly type: 'string[]';
  readonly default: readonly string[];
}
/** A value of another shape ("25M" or 1000, a string or a list of them): `parse` checks and converts it. */
export interface CustomField<T = unknown> extends Base {
  readonly type: 'custom';
  /** Throws (an error that starts with `where`) when the value cannot be used. */
  readonly parse: (v: unknown, where: string) => T;
}
export type Field = StringField | BooleanField | NumberField | StringListField | CustomField;
export type Fields = Readonly<Record<string, Field>>;

export interface Table {
  readonly kind: 'table';
  readonly fields: Fields;
  readonly doc: string;
}
export interface TableArray {
  readonly kind: 'array';
  readonly fields: Fields;
  readonly doc: string;
}
export type Schema = Readonly<Record<string, Table | TableArray>>;

type Options<F extends Field> = Omit<F, 'type' | 'doc'>;

/** A string; `enum` narrows its type to the listed values. */
export function str<const O extends Options<StringField>>(
  doc: string,
  o: O,
): { readonly type: 'string'; doc: string } & O;
export function str(doc: string): { readonly type: 'string'; readonly doc: string };
export function str(doc: string, o?: Options<StringField>): StringField {
  return { type: 'string', doc, ...o };
}
export function bool(doc: string, dflt: boolean): BooleanField {
  return { type: 'boolean', doc, default: dflt };
}
export function int<const O extends Options<NumberField>>(
  doc: string,
  o: O,
): { readonly type: 'integer'; doc: string } & O {
  return { type: 'integer', doc, ...o };
}
export function num<const O extends Options<NumberField>>(
  doc: string,
  o: O,
): { readonly type: 'number'; doc: string } & O {
  return { type: 'number', doc, ...o };
}
export function strs(doc: string, dflt: readonly string[]): StringListField {
  return { type: 'string[]', doc, default: dflt };
}
export function custom<T>(doc: string, parse: (v: unknown, where: string) => T): CustomField<T> {
  return { type: 'custom', doc, parse };
}

type Plain<F> =
  F extends CustomField<infer T>
    ? T
    : F extends { type: 'string'; enum: readonly (infer E)[] }
      ? E
      : F extends { type: 'string' }
        ? string
        : F extends { type: 'boolean' }
          ? boolean
          : F extends { type: 'integer' | 'number' }
            ? number
            : F extends { type: 'string[]' }
              ? readonly string[]
              : never;
/** The checked value of a field: never undefined when it has a default or is required. */
export type ValueOf<F> = F extends { default: string | number | boolean | readonly string[] } | { required: true }
  ? Plain<F>
  : Plain<F> | undefined;
/** A checked table: one property per declared key. */
export type Section<F extends Fields> = { readonly [K in keyof F]: ValueOf<F[K]> };
/** A checked file: tables, and arrays of tables for `[[name]]`. */
export type InferSchema<S extends Schema> = {
  readonly [K in keyof S]: S[K] extends TableArray ? readonly Section<S[K]['fields']>[] : Section<S[K]['fields']>;
};

/**
 * Compile-time proof that a reader used every key of a section: pass it what is left after destructuring the
 * keys it handles (`const { a, b, ...rest } = section; allHandled(rest)`); a key it does not take is an error.
 */
export function allHandled(_rest: { readonly [key: string]: never }): void {}

export function describe(v: unknown): string {
  if (Array.isArray(v)) return 'an array';
  if (v === null) return 'null';
  if (v instanceof Date) return 'a date';
  return typeof v === 'object' ? 'a table' : `${typeof v} ${JSON.stringify(v)}`;
}

export function isTable(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

/**
 * Checks one value against its field. `where` starts every error (`file:line: "table.key"`); `error` builds
 * the file's error type.
 */
export function checkField(f: Field, v: unknown, where: string, error: (message: string) => Error): unknown {
  if (v === undefined) return 'default' in f ? f.default : undefined;
  const bad = (want: string) => error(`${where} must be ${want}, got ${describe(v)}`);
  switch (f.type) {
    case 'custom':
      return f.parse(v, where);
    case 'string':
      if (typeof v !== 'string') throw bad('a string');
      if (f.nonEmpty && v === '') throw bad('a non-empty string');
      if (f.enum && !f.enum.includes(v)) throw bad(`one of ${f.enum.map((e) => `"${e}"`).join(', ')}`);
      return v;
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'integer':
    case 'number': {
      const n = typeof v === 'bigint' ? Number(v) : v;
      if (typeof n !== 'number' || Number.isNaN(n)) throw bad(f.type === 'integer' ? 'an integer' : 'a number');
      if (f.type === 'integer' && !Number.isInteger(n)) throw bad('an integer');
      if (f.min !== undefined && n < f.min) throw bad(`at least ${f.min}`);
      if (f.max !== undefined && n > f.max) throw bad(`at most ${f.max}`);
      return n;
    }
    case 'string[]':
      if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) throw bad('an array of strings');
      return v;
  }
}

/** Where a table of a TOML file is: its text and name, and which `[[name]]` it is. */
export interface TablePlace {
  readonly source: string;
  readonly file: string;
  readonly table: string;
  /** For `[[table]]`: which one (0-based). */
  readonly index?: number;
  /** Builds the file's error type (ConfigError, FetchConfigError). */
  readonly error: (message: string) => Error;
  /** How a key is named in errors (default `"table.key"`). */
  readonly keyLabel?: (key: string) => string;
}

/** `file:line` of a key of the table (or of the table's header when the key is not written in it). */
export function placeOf(p: TablePlace, key: string | null): string {
  const index = p.index ?? 0;
  return where(p.file, lineOf(p.source, p.table, key, index) ?? lineOf(p.source, p.table, null, index));
}

/**
 * Checks a table against its fields: an unknown key, a wrong type, a value out of range or a missing required
 * key is an error that names the key and its line.
 */
export function checkSection<F extends Fields>(fields: F, raw: Record<string, unknown>, p: TablePlace): Section<F> {
  const label = p.index === undefined ? `[${p.table}]` : `[[${p.table}]] #${p.index + 1}`;
  for (const key of Object.keys(raw)) {
    if (!Object.hasOwn(fields, key)) {
      throw p.error(`${placeOf(p, key)}: unknown key "${key}" in ${label} (known: ${Object.keys(fields).join(', ')})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [key, f] of Object.entries(fields)) {
    const v = raw[key];
    if (v === undefined && f.required) throw p.error(`${placeOf(p, null)}: ${label} needs "${key}"`);
    const keyLabel = p.keyLabel?.(key) ?? `"${p.table}.${key}"`;
    out[key] = checkField(f, v, `${placeOf(p, key)}: ${keyLabel}`, p.error);
  }
  // The one place the shape is asserted: every key of `fields` was checked against its field just above.
  return out as Section<F>;
}

/**
 * Checks a parsed document against a schema of tables and arrays of tables: an unknown table, a table where an
 * array is expected (or the reverse) and every error of `checkSection` name the file and line.
 */
export function checkDocument<S extends Schema>(
  schema: S,
  doc: Record<string, unknown>,
  source: string,
  file: string,
  error: (message: string) => Error,
): InferSchema<S> {
  for (const key of Object.keys(doc)) {
    if (!Object.hasOwn(schema, key)) {
      const line = lineOf(source, key, null) ?? lineOf(source, null, key);
      throw error(`${where(file, line)}: unknown key or table "${key}" (known: ${Object.keys(schema).join(', ')})`);
    }
  }
  const out: Record<string, unknown> = {};
  for (const [table, spec] of Object.entries(schema)) {
    const raw = doc[table];
    const at = () => where(file, lineOf(source, table, null) ?? lineOf(source, null, table));
    if (spec.kind === 'array') {
      if (raw !== undefined && !Array.isArray(raw)) {
        throw error(`${at()}: "${table}" must be an array of tables ([[${table}]])`);
      }
      out[table] = (raw ?? []).map((r: unknown, index: number) => {
        if (!isTable(r)) throw error(`${at()}: [[${table}]] #${index + 1} must be a table`);
        return checkSection(spec.fields, r, { source, file, table, index, error });
      });
    } else {
      if (raw !== undefined && !isTable(raw)) throw error(`${at()}: "${table}" must be a table ([${table}])`);
      out[table] = checkSection(spec.fields, raw ?? {}, { source, file, table, error });
    }
  }
  // As in checkSection: every table of `schema` was checked just above.
  return out as InferSchema<S>;
}
