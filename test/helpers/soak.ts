/**
 * Shared by the soak scenarios in test/soak/*.test.ts. Each scenario is short by default (part of `npm test`,
 * seconds) and long under SOAK=1 (`npm run soak`), and prints one line with its figure, `SOAK <name>: …`,
 * which the README's soak table quotes.
 */

/** True under SOAK=1 (`npm run soak`). */
export const LONG_SOAK = process.env.SOAK === '1';

/** `short` in `npm test`, `long` under SOAK=1. */
export function soakScale<T>(short: T, long: T): T {
  return LONG_SOAK ? long : short;
}

/** Prints the scenario's one line with its figure. */
export function figure(name: string, text: string): void {
  process.stdout.write(`SOAK ${name}${LONG_SOAK ? ' (long)' : ' (short)'}: ${text}\n`);
}
