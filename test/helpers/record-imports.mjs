// `node --import ./record-imports.mjs …`: appends the URL of every module the process resolves to the file
// named by $POSTERN_RECORD_IMPORTS, so a test can check what a command loads (e.g. that `postern fetch`
// never loads the server or argon2).
import { register } from 'node:module';

register('./record-imports-hook.mjs', import.meta.url);
