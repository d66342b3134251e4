/**
 * From a recipient address (RCPT TO, or `postern deliver -a`) to the user names to try, in order. The users
 * file may hold plain names (`alice`) or whole addresses (`alice@example.com`); `recipient_lookup` says which
 * to try, and `recipient_delimiter` strips an address extension as Postfix does (`alice+lists` → `alice`).
 * Exact spellings come first; a lower-cased local part is tried last, since MTAs and users vary the case of
 * addresses while user names are compared exactly.
 */
/** Which spellings of a recipient name a user: the whole address, the local part, or the address first. */
export type RecipientLookup = 'address-then-localpart' | 'address' | 'localpart';

export interface RecipientRules {
  readonly lookup: RecipientLookup;
  /** Characters that start an extension in the local part; '' for none. */
  readonly delimiter: string;
}

export const DEFAULT_RECIPIENT_RULES: RecipientRules = { lookup: 'address-then-localpart', delimiter: '' };

export function candidateUsers(address: string, rules: RecipientRules): string[] {
  const at = address.lastIndexOf('@');
  const local = at < 0 ? address : address.slice(0, at);
  const domain = at < 0 ? '' : address.slice(at + 1).toLowerCase();
  const locals = [local];
  if (rules.delimiter !== '') {
    let cut = -1;
    for (const ch of rules.delimiter) {
      const i = local.indexOf(ch);
      if (i > 0 && (cut < 0 || i < cut)) cut = i;
    }
    if (cut > 0) locals.push(local.slice(0, cut));
  }
  for (const l of [...locals]) if (l.toLowerCase() !== l) locals.push(l.toLowerCase());
  const out: string[] = [];
  const add = (name: string) => {
    if (name !== '' && !out.includes(name)) out.push(name);
  };
  const withDomain = rules.lookup !== 'localpart' && domain !== '';
  const bare = rules.lookup !== 'address' || domain === '';
  if (withDomain) for (const l of locals) add(`${l}@${domain}`);
  if (bare) for (const l of locals) add(l);
  return out;
}
