/**
 * The unique-id listing grammar of RFC 1939 §7, used by every store (to decide whether a name can be shown as
 * is) and by the client (to check a server's UIDL reply): a unique-id is 1 to 70 characters in 0x21–0x7E.
 */

/** RFC 1939 §7: the longest unique-id. */
export const MAX_UIDL_LENGTH = 70;

export function isValidUidl(s: string): boolean {
  if (s.length < 1 || s.length > MAX_UIDL_LENGTH) return false;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}
