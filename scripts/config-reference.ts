/**
 * Prints the configuration reference (Markdown) from src/config/schema.ts, so the README cannot drift from
 * what the server accepts. `npm run config-reference` prints it; test/config/config.test.ts checks that
 * README.md contains it verbatim.
 */
import { schema } from '../src/config/schema.ts';

export function configReference(): string {
  const out: string[] = [];
  for (const [name, table] of Object.entries(schema)) {
    out.push(`#### \`${table.kind === 'array' ? `[[${name}]]` : `[${name}]`}\` — ${table.doc}`, '');
    out.push('| key | type | default | meaning |', '|---|---|---|---|');
    for (const [key, f] of Object.entries(table.fields)) {
      const type =
        f.type === 'string' && 'enum' in f && f.enum
          ? (f.enum as readonly string[]).map((e) => `"${e}"`).join(' \\| ')
          : f.type;
      const def = 'default' in f && f.default !== undefined ? `\`${JSON.stringify(f.default)}\`` : '—';
      out.push(`| \`${key}\` | ${type} | ${def} | ${f.doc.replace(/\|/g, '\\|')} |`);
    }
    out.push('');
  }
  return out.join('\n');
}

const START = '<!-- config-reference:start -->';
const END = '<!-- config-reference:end -->';

/** README text with the section between the markers replaced by the current reference. */
export function withReference(readme: string): string {
  const a = readme.indexOf(START);
  const b = readme.indexOf(END);
  if (a < 0 || b < a) throw new Error('README.md has no config-reference markers');
  return `${readme.slice(0, a + START.length)}\n${configReference()}${readme.slice(b)}`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (process.argv.includes('--write')) {
    const { readFileSync, writeFileSync } = await import('node:fs');
    writeFileSync('README.md', withReference(readFileSync('README.md', 'utf8')));
  } else {
    process.stdout.write(configReference());
  }
}
