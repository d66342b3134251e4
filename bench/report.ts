/** Collected measurements and the side-by-side table (Markdown, so it can be pasted into docs as is). */

export type ServerName = 'Postern' | 'Dovecot';

export interface Row {
  readonly section: string;
  readonly label: string;
  readonly unit: string;
  readonly better: 'higher' | 'lower';
  readonly values: Record<ServerName, number[]>;
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
      row = { section, label, unit, better, values: { Postern: [], Dovecot: [] } };
      this.rows.push(row);
    }
    row.values[server].push(value);
  }

  note(text: string): void {
    if (!this.notes.includes(text)) this.notes.push(text);
  }

  /** Markdown table: medians, Postern/Dovecot ratio, and which side is ahead (±5 % counts as even). */
  table(withDovecot: boolean): string {
    const head = withDovecot
      ? ['Measurement', 'Postern', 'Dovecot', 'Postern/Dovecot', 'Ahead']
      : ['Measurement', 'Postern'];
    const lines = [`| ${head.join(' | ')} |`, `|${head.map((_h, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
    let section = '';
    for (const r of this.rows) {
      if (r.section !== section) {
        section = r.section;
        lines.push(`| **${section}** |${' |'.repeat(head.length - 1)}`);
      }
      const p = median(r.values.Postern);
      const label = `${r.label} (${r.unit}, ${r.better} is better)`;
      if (!withDovecot) {
        lines.push(`| ${label} | ${fmt(p)} |`);
        continue;
      }
      const d = median(r.values.Dovecot);
      const ratio = p / d;
      let ahead = '—';
      if (Number.isFinite(ratio) && ratio > 0) {
        const good = r.better === 'higher' ? ratio : 1 / ratio;
        ahead = good > 1.05 ? 'Postern' : good < 1 / 1.05 ? 'Dovecot' : 'even';
      }
      lines.push(
        `| ${label} | ${fmt(p)} | ${fmt(d)} | ${Number.isFinite(ratio) ? ratio.toFixed(2) : '—'} | ${ahead} |`,
      );
    }
    return lines.join('\n');
  }

  /** Every run's value, for --json. */
  toJSON(): object {
    return {
      rows: this.rows.map((r) => ({
        ...r,
        median: { Postern: median(r.values.Postern), Dovecot: median(r.values.Dovecot) },
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
