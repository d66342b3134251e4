/**
 * Per-user settings from the user database (users-file extra fields, or columns of PostgreSQL's users table),
 * parsed once where a user record is read, so the server's login policy, delivery's quota and the CLI read
 * numbers, never strings.
 *
 * A malformed value is ignored — the server-wide default applies to that user, as if the field were absent —
 * and reported once per version of the file (a warning with the line and the user; `postern check-config`
 * lists it too): refusing the user's logins or mail over a typo in a limit would punish the user for the
 * operator's mistake, and the limits involved are policy, not security.
 */

export interface UserSettings {
  /** `login_delay=`: minimum seconds between two logins (RFC 2449 LOGIN-DELAY). */
  readonly loginDelaySeconds?: number;
  /** `expire=`: days a message is kept after its first retrieval, or never (RFC 2449 EXPIRE). */
  readonly expireDays?: number | 'never';
  /** `quota_bytes=` (SIZE with a K, M, G or T suffix, powers of 1024) and `quota_messages=`; 0 lifts a limit. */
  readonly quota?: { readonly bytes?: number; readonly messages?: number };
}

/** The field names (users-file extra fields and PostgreSQL columns alike). */
export const USER_SETTING_FIELDS = ['login_delay', 'expire', 'quota_bytes', 'quota_messages'] as const;
export type UserSettingField = (typeof USER_SETTING_FIELDS)[number];

/** A value that could not be used, and why; the field is ignored. */
export interface UserSettingProblem {
  readonly field: UserSettingField;
  readonly message: string;
}

/** An EXPIRE value (RFC 2449 §6.7): "never" or a whole number of days; undefined when malformed. */
export function parseExpireDays(v: string): number | 'never' | undefined {
  if (v.toLowerCase() === 'never') return 'never';
  if (/^\d{1,5}$/.test(v)) return Number(v);
  return undefined;
}

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** `1048576`, `512K`, `100M`, `2G`, `1T` (case-insensitive, an optional trailing B) → octets; null if invalid. */
export function parseQuotaSize(text: string): number | null {
  const m = /^(\d+)\s*([kmgt]?)b?$/i.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]) * UNITS[m[2].toLowerCase()];
  return Number.isSafeInteger(n) ? n : null;
}

const PARSERS: { readonly [F in UserSettingField]: { parse: (v: string) => number | 'never' | null; want: string } } = {
  login_delay: { parse: (v) => (/^\d{1,7}$/.test(v) ? Number(v) : null), want: 'a whole number of seconds' },
  expire: { parse: (v) => parseExpireDays(v) ?? null, want: '"never" or a whole number of days' },
  quota_bytes: { parse: parseQuotaSize, want: 'a size like 1048576, 500M or 2G' },
  quota_messages: {
    parse: (v) => (/^\d+$/.test(v) && Number.isSafeInteger(Number(v)) ? Number(v) : null),
    want: 'a whole number',
  },
};

function isSettingField(key: string): key is UserSettingField {
  return Object.hasOwn(PARSERS, key);
}

/**
 * Parses `key=value` pairs (of a key given twice the last usable value counts); other keys are not settings
 * and are passed over. `settings` is undefined when no field was usable.
 */
export function parseUserSettings(fields: Iterable<readonly [string, string]>): {
  settings: UserSettings | undefined;
  problems: UserSettingProblem[];
} {
  const values = new Map<UserSettingField, number | 'never'>();
  const problems: UserSettingProblem[] = [];
  for (const [key, value] of fields) {
    if (!isSettingField(key)) continue;
    const { parse, want } = PARSERS[key];
    const v = parse(value);
    if (v === null)
      problems.push({ field: key, message: `${key}=${value} is not ${want}; ignored, the default applies` });
    else values.set(key, v);
  }
  const num = (f: UserSettingField): number | undefined => {
    const v = values.get(f);
    return typeof v === 'number' ? v : undefined;
  };
  const bytes = num('quota_bytes');
  const messages = num('quota_messages');
  const settings: UserSettings = {
    ...(values.has('login_delay') ? { loginDelaySeconds: num('login_delay') } : {}),
    ...(values.has('expire') ? { expireDays: values.get('expire') } : {}),
    ...(bytes !== undefined || messages !== undefined
      ? { quota: { ...(bytes !== undefined ? { bytes } : {}), ...(messages !== undefined ? { messages } : {}) } }
      : {}),
  };
  return { settings: Object.keys(settings).length > 0 ? settings : undefined, problems };
}

/** `key=value` pairs of users-file extra-field tokens (a token without `=` has the value ''). */
export function extraFieldPairs(extra: readonly string[]): [string, string][] {
  return extra.map((token) => {
    const eq = token.indexOf('=');
    return eq < 0 ? [token, ''] : [token.slice(0, eq), token.slice(eq + 1)];
  });
}

/** True when the settings override the server's LOGIN-DELAY or EXPIRE (CAPA then says "USER"). */
export function overridesPolicy(s: UserSettings | undefined): boolean {
  return s !== undefined && (s.loginDelaySeconds !== undefined || s.expireDays !== undefined);
}
