/** RFC 2449 §5 CAPA: one capability per line, a tag and optional space-separated arguments. */
export class Capabilities {
  private readonly map = new Map<string, string[]>();

  /** `lines` as the server sent them; empty when the server does not implement CAPA. */
  constructor(readonly lines: readonly string[] = []) {
    for (const line of lines) {
      const [tag, ...args] = line.trim().split(/\s+/);
      if (tag) this.map.set(tag.toUpperCase(), args);
    }
  }

  /** Whether the server answered CAPA at all (RFC 1939-only servers do not). */
  get known(): boolean {
    return this.lines.length > 0;
  }

  has(tag: string): boolean {
    return this.map.has(tag.toUpperCase());
  }

  /** The arguments of a capability (e.g. `args('SASL')` → ['PLAIN', 'SCRAM-SHA-256']), or undefined if absent. */
  args(tag: string): readonly string[] | undefined {
    return this.map.get(tag.toUpperCase());
  }

  /** SASL mechanisms offered, upper-case. */
  get sasl(): readonly string[] {
    return (this.map.get('SASL') ?? []).map((m) => m.toUpperCase());
  }

  /** RFC 2449 §6.5 LOGIN-DELAY in seconds, if advertised. */
  get loginDelay(): number | undefined {
    const a = this.map.get('LOGIN-DELAY')?.[0];
    return a !== undefined && /^\d+$/.test(a) ? Number(a) : undefined;
  }

  /** RFC 2449 §6.7 EXPIRE in days ('NEVER' as Infinity), if advertised. */
  get expire(): number | undefined {
    const a = this.map.get('EXPIRE')?.[0];
    if (a === undefined) return undefined;
    if (a.toUpperCase() === 'NEVER') return Number.POSITIVE_INFINITY;
    return /^\d+$/.test(a) ? Number(a) : undefined;
  }

  /** RFC 2449 §6.9 IMPLEMENTATION text, if advertised. */
  get implementation(): string | undefined {
    const a = this.map.get('IMPLEMENTATION');
    return a ? a.join(' ') : undefined;
  }
}
