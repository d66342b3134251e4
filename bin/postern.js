#!/usr/bin/env node
// Entry point of the `postern` command. The sources are TypeScript run through tsx's loader, so a fresh
// clone needs no build step before `npm start`.

// libuv's thread pool runs file I/O and argon2 hashing. With the default 4 threads a burst of logins (argon2
// takes tens of milliseconds each) would make every RETR wait for a thread. It must be set before anything
// uses the pool, hence before the (dynamic) imports below.
process.env.UV_THREADPOOL_SIZE ??= '16';

const { register } = await import('tsx/esm/api');
register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
