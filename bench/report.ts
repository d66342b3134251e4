/** Collected measurements and the side-by-side table (Markdown, so it can be pasted into docs as is). */

import type { ServerName } from './servers.ts';

export type { ServerName };

export interface Row {
  readonly section: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly values: Partial<Record<ServerName, number[]>>;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export class Results {
  readonly rows: Row[] = [];
  readonly notes: string[] = [];

  add(section: string, label: string, unit: string, better: Row['better'], server: ServerName, value: number): void {
    let row = this.rows.find((r) => r.section === section && r.label === label && r.unit === unit);
    if (!row) {
      row = { section, label, unit, better, values: {} };
      this.rows.push(row);
    }
    const list = row.values[server] ?? [];
    list.push(value);
    row.values[server] = list;
  }

  note(text: string): void {
    if (!this.notes.includes(text)) this.notes.push(text);
  }

  /**
   * Markdown table: medians (with min–max when there are several runs), the Postern/Dovecot ratio against the
   * tuned Dovecot, which side is ahead (ratios within 0.8–1.25 count as even on this shared machine), and the
   * stock Dovecot as an extra column when it was measured.
   */
  table(servers: readonly ServerName[]): string {
    const withDovecot = servers.includes('Dovecot');
    const withStock = servers.includes('Dovecot stock');
    const head = ['Measurement', 'Postern'];
    if (withDovecot) head.push('Dovecot (tuned)', 'Postern/Dovecot', 'Ahead');
    if (withStock) head.push('Dovecot (stock)', 'Postern/stock');
    // --store postgres: each frontend count as a column, with its ratio to Postern on Maildir.
    const pgKinds = servers.filter((s) => s.startsWith('Postern PG'));
    for (const k of pgKinds) head.push(k, `${k.replace('Postern ', '')}/Maildir`);
    const lines = [`| ${head.join(' | ')} |`, `|${head.map((_h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
    let section = '';
    for (const r of this.rows) {
      if (r.section !== section) {
        section = r.section;
        lines.push(`| **${section}** |${' |'.repeat(head.length - 1)}`);
      }
      const p = median(r.values.Postern ?? []);
      const cells = [`${r.label} (${r.unit}, ${r.better} is better)`, spread(r.values.Postern ?? [])];
      if (withDovecot) {
        const d = median(r.values.Dovecot ?? []);
        const ratio = p / d;
        let ahead = '—';
        if (Number.isFinite(ratio) && ratio > 0) {
          const good = r.better === 'higher' ? ratio : 1 / ratio;
          ahead = good > 1.25 ? 'Postern' : good < 0.8 ? 'Dovecot' : 'even';
        }
        cells.push(spread(r.values.Dovecot ?? []), Number.isFinite(ratio) ? ratio.toFixed(2) : '—', ahead);
      }
      if (withStock) {
        const ratio = p / median(r.values['Dovecot stock'] ?? []);
        cells.push(spread(r.values['Dovecot stock'] ?? []), Number.isFinite(ratio) ? ratio.toFixed(2) : '—');
      }
      for (const k of pgKinds) {
        const ratio = median(r.values[k] ?? []) / p;
        cells.push(spread(r.values[k] ?? []), Number.isFinite(ratio) ? ratio.toFixed(2) : '—');
      }
      lines.push(`| ${cells.join(' | ')} |`);
    }
    return lines.join('\n');
  }

  /** Every run's value, for --json. */
  toJSON(): object {
    return {
      rows: this.rows.map((r) => ({
        ...r,
        median: Object.fromEntries(Object.entries(r.values).map(([k, v]) => [k, median(v ?? [])])),
      })),
      notes: this.notes,
    };
  }
}

export function fmt(x: number): string {
  if (!Number.isFinite(x)) return '—';
  const a = Math.abs(x);
  if (a >= 1000) return Math.round(x).toLocaleString('en-US');
  if (a >= 100) return x.toFixed(0);
  if (a >= 10) return x.toFixed(1);
  return x.toFixed(2);
}

/** The median, and the range of the runs when there are several: `1,234 (1,100–1,300)`. */
function spread(xs: readonly number[]): string {
  if (xs.length < 2) return fmt(median(xs));
  return `${fmt(median(xs))} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))})`;
}
