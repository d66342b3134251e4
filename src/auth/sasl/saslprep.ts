/**
 * SASLprep, RFC 4013 (a profile of stringprep, RFC 3454), for SCRAM passwords: RFC 5802 §2.2 computes the
 * salted password over Normalize(password), so a client and a user store that normalise alike derive the
 * same keys from, say, a password typed with a no-break space or in decomposed form.
 *
 * What is implemented: the mapping (§2.1: non-ASCII spaces to SPACE, "commonly mapped to nothing" removed),
 * NFKC (§2.2), and the prohibited-output check (§2.3). Unassigned code points are allowed, as for a query
 * (RFC 3454 §7). The bidirectional check (§2.5, RFC 3454 §6) is not applied: it only ever rejects a string,
 * never changes it, so skipping it cannot make two sides derive different keys; it only accepts a few
 * strings of mixed right-to-left and left-to-right text that a strict implementation would refuse.
 *
 * User names are not prepared: Postern compares names exactly (names.ts).
 */

/** RFC 3454 C.1.2, non-ASCII space characters: mapped to U+0020. */
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
/** RFC 3454 B.1, commonly mapped to nothing. */
// biome-ignore lint/suspicious/noMisleadingCharacterClass: each code point is removed on its own, by design.
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;

/**
 * RFC 4013 §2.3 prohibited output: C.1.2 (non-ASCII space), C.2.1 and C.2.2 (control characters), C.3
 * (private use), C.4 (non-character code points), C.5 (surrogates), C.6 (inappropriate for plain text),
 * C.7 (inappropriate for canonical representation), C.8 (change display properties or deprecated),
 * C.9 (tagging characters).
 */
const PROHIBITED = new RegExp(
  [
    '[\\u00A0\\u1680\\u2000-\\u200B\\u202F\\u205F\\u3000]', // C.1.2
    '[\\u0000-\\u001F\\u007F]', // C.2.1
    '[\\u0080-\\u009F\\u06DD\\u070F\\u180E\\u200C\\u200D\\u2028\\u2029\\u2060-\\u2063\\u206A-\\u206F\\uFEFF\\uFFF9-\\uFFFC]', // C.2.2
    '[\\u{1D173}-\\u{1D17A}]', // C.2.2
    '[\\uE000-\\uF8FF\\u{F0000}-\\u{FFFFD}\\u{100000}-\\u{10FFFD}]', // C.3
    '[\\uFDD0-\\uFDEF\\uFFFE\\uFFFF]', // C.4 (plane 0)
    '[\\u{1FFFE}\\u{1FFFF}\\u{2FFFE}\\u{2FFFF}\\u{3FFFE}\\u{3FFFF}\\u{4FFFE}\\u{4FFFF}\\u{5FFFE}\\u{5FFFF}]', // C.4
    '[\\u{6FFFE}\\u{6FFFF}\\u{7FFFE}\\u{7FFFF}\\u{8FFFE}\\u{8FFFF}\\u{9FFFE}\\u{9FFFF}\\u{AFFFE}\\u{AFFFF}]', // C.4
    '[\\u{BFFFE}\\u{BFFFF}\\u{CFFFE}\\u{CFFFF}\\u{DFFFE}\\u{DFFFF}\\u{EFFFE}\\u{EFFFF}\\u{FFFFE}\\u{FFFFF}]', // C.4
    '[\\u{10FFFE}\\u{10FFFF}]', // C.4
    '[\\uD800-\\uDFFF]', // C.5: with the u flag this matches only a lone surrogate
    '[\\uFFF9-\\uFFFD]', // C.6
    '[\\u2FF0-\\u2FFB]', // C.7
    '[\\u0340\\u0341\\u200E\\u200F\\u202A-\\u202E\\u206A-\\u206F]', // C.8
    '[\\u{E0001}\\u{E0020}-\\u{E007F}]', // C.9
  ].join('|'),
  'u',
);

/** The prepared string, or null when it holds a prohibited character. */
export function saslprep(input: string): string | null {
  // U+200B is in both tables; removing B.1 first (as Python's stringprep-based implementations do) drops it.
  const mapped = input.replace(MAPPED_TO_NOTHING, '').replace(NON_ASCII_SPACE, ' ').normalize('NFKC');
  return PROHIBITED.test(mapped) ? null : mapped;
}
