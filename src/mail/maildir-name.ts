/**
 * New Maildir file names, shared by every writer (the store's delivery, `postern fetch`'s Maildir sink), so
 * they agree on the host-name escaping and never collide within a process. Parsing names is the store's
 * business (storage/maildir/names.ts); making them is a mail-format rule that the client side needs too,
 * without loading the store.
 */
/**
 * Maildir's rule for the host part: '/' and ':' become '\057' and '\072'. Postern also escapes ',' (it starts
 * Dovecot's size fields), '\' and anything outside printable ASCII, so the base stays a valid UIDL.
 */
export function sanitizeHostname(host: string): string {
  let out = '';
  for (const byte of Buffer.from(host, 'utf8')) {
    const keep = byte > 0x20 && byte < 0x7f && byte !== 0x2f && byte !== 0x3a && byte !== 0x2c && byte !== 0x5c;
    out += keep ? String.fromCharCode(byte) : `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return out || 'localhost';
}

let lastSec = 0;
let lastUsec = -1;
let counter = 0;

/**
 * A new unique base `<sec>.M<usec>P<pid>Q<n>.<host>`. The (sec, usec) pair strictly increases within the
 * process, so messages delivered by one process sort in delivery order even within one microsecond; the
 * counter is per process (not per store instance) so two stores in one process never collide.
 */
export function newUniqueBase(host: string): string {
  const nowUs = Date.now() * 1000;
  let sec = Math.floor(nowUs / 1e6);
  let usec = nowUs % 1e6;
  if (sec < lastSec || (sec === lastSec && usec <= lastUsec)) {
    sec = lastSec;
    usec = lastUsec + 1;
    if (usec >= 1e6) {
      sec++;
      usec = 0;
    }
  }
  lastSec = sec;
  lastUsec = usec;
  counter++;
  return `${sec}.M${usec}P${process.pid}Q${counter}.${host}`;
}
