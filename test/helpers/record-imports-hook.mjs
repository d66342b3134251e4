// Module resolve hook used by record-imports.mjs (runs on Node's loader thread).
import { appendFileSync } from 'node:fs';

export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  if (process.env.POSTERN_RECORD_IMPORTS) appendFileSync(process.env.POSTERN_RECORD_IMPORTS, `${result.url}\n`);
  return result;
}
