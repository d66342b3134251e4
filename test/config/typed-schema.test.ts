/**
 * The config's types come from the schema (src/toml/schema.ts): these checks are made by `npm run typecheck`
 * (tsc covers test/), and would stop compiling if the typing were loosened; the runtime asserts the values.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../src/config/config.ts';
import { type ConfigFile, schema } from '../../src/config/schema.ts';
import { allHandled, checkDocument } from '../../src/toml/schema.ts';

const file: ConfigFile = checkDocument(schema, {}, '', 'p.toml', (m) => new ConfigError(m));

test('a key of a section that a reader does not take apart is a compile error', () => {
  const { enabled, address, port, process_metrics, ...rest } = file.metrics;
  // @ts-expect-error max_connections is left in `rest`: not handled
  allHandled(rest);
  const { max_connections, ...none } = rest;
  allHandled(none);
  assert.deepEqual([enabled, address, port, process_metrics, max_connections], [false, '127.0.0.1', 9110, true, 32]);
});

test('enums, defaults and optional keys have the types the schema says', () => {
  const tls: 'starttls' | 'implicit' | 'none' = file.listen[0]?.tls ?? 'none';
  const level: ConfigFile['log']['level'] = file.log.level;
  // @ts-expect-error not one of the schema's log levels
  const wrong: ConfigFile['log']['level'] = 'verbose';
  // @ts-expect-error server.hostname has no default: it may be undefined
  const hostname: string = file.server.hostname;
  const workers: number = file.server.workers;
  assert.deepEqual([tls, level, wrong, hostname, workers], ['none', 'info', 'verbose', undefined, 1]);
});
