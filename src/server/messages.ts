/**
 * The human-readable text of every server reply, in one place per language (RFC 6856 LANG). Machine-read
 * parts (numbers, response codes, "+OK"/"-ERR") are not here and never change with the language. To add a
 * language: copy `en`, translate the values, add it to `catalogues` with its RFC 5646 tag; the type checker
 * makes sure nothing is missing.
 */

const en = {
  name: 'English',
  sendPassword: 'Send your password.',
  bye: 'Bye.',
  beginTls: 'Begin TLS negotiation now.',
  topFollows: 'Top of message follows.',
  capaFollows: 'Capability list follows.',
  uidlFollows: 'Unique-id listing follows.',
  langFollows: 'Language listing follows.',
  langChanged: 'Language changed to English.',
  langUnknown: 'Unsupported language.',
  utf8Enabled: 'UTF-8 enabled.',
  idle: 'Disconnected for inactivity.',
  tooManyBad: 'Too many bad commands, closing.',
  tooManyFailures: 'Too many failed logins, closing.',
  lineTooLong: (limit: number) => `Line too long (limit ${limit} octets).`,
  unknownCommand: 'Unknown command.',
  wrongState: (verb: string, state: string) => `${verb} is not valid in the ${state} state.`,
  apopUnavailable: 'APOP is not available on this server.',
  usageApop: 'Usage: APOP name digest',
  usageTop: 'Usage: TOP msg lines',
  invalidLineCount: 'Invalid line count.',
  invalidMsn: 'Invalid message number.',
  msnRequired: 'Message number required.',
  noMaildrop: 'No maildrop is open.',
  noSuchMessage: 'No such message.',
  messageGone: 'No such message (it was removed by another program).',
  alreadyDeleted: (msn: number) => `Message ${msn} already deleted.`,
  messageDeleted: (msn: number) => `Message ${msn} deleted.`,
  plaintextRefused: 'Plaintext authentication disallowed on non-secure connections; use STLS.',
  stlsUnavailable: 'STLS is not available on this port.',
  stlsAfterUser: 'STLS must come before USER.',
  tlsActive: 'TLS is already active.',
  tlsUnavailable: 'TLS is not available.',
  userNeedsName: 'USER needs a name.',
  sendUserFirst: 'Send USER first.',
  authFailed: 'Authentication failed.',
  loggedIn: (n: number, size: number) => `Logged in, ${n} messages (${size} octets).`,
  loggingOut: (deleted: number, left: number) => `Logging out, ${deleted} deleted, ${left} left.`,
  maildropHas: (n: number, size: number) => `Maildrop has ${n} messages (${size} octets).`,
  commitFailed: 'Some deleted messages were not removed, try again later.',
  shuttingDown: 'Server shutting down, try again later.',
  inUse: 'Mailbox is locked by another POP3 session.',
  storageTemp: 'Temporary storage failure, try again later.',
  storagePerm: 'Mailbox cannot be opened.',
  internalError: 'Internal error, try again later.',
  loginDelay: (seconds: number) => `Logins are allowed every ${seconds} seconds; try again later.`,
  saslFollows: 'SASL mechanisms follow.',
  saslUnsupported: 'Unsupported authentication mechanism.',
  saslBadBase64: 'Invalid base64 data.',
  saslCancelled: 'Authentication cancelled.',
  saslUsage: 'Usage: AUTH mechanism [initial-response]',
  saslTooLong: 'Authentication data too long.',
  authTemp: 'Authentication is temporarily unavailable, try again later.',
};

export type Catalogue = typeof en;

const de: Catalogue = {
  name: 'Deutsch',
  sendPassword: 'Bitte das Passwort senden.',
  bye: 'Auf Wiedersehen.',
  beginTls: 'TLS-Aushandlung kann beginnen.',
  topFollows: 'Anfang der Nachricht folgt.',
  capaFollows: 'Liste der Fähigkeiten folgt.',
  uidlFollows: 'Liste der eindeutigen Kennungen folgt.',
  langFollows: 'Liste der Sprachen folgt.',
  langChanged: 'Sprache auf Deutsch umgestellt.',
  langUnknown: 'Sprache wird nicht unterstützt.',
  utf8Enabled: 'UTF-8 eingeschaltet.',
  idle: 'Verbindung wegen Untätigkeit getrennt.',
  tooManyBad: 'Zu viele ungültige Befehle, Verbindung wird beendet.',
  tooManyFailures: 'Zu viele fehlgeschlagene Anmeldungen, Verbindung wird beendet.',
  lineTooLong: (limit) => `Zeile zu lang (höchstens ${limit} Oktette).`,
  unknownCommand: 'Unbekannter Befehl.',
  wrongState: (verb, state) => `${verb} ist im Zustand ${state} nicht erlaubt.`,
  apopUnavailable: 'APOP ist auf diesem Server nicht verfügbar.',
  usageApop: 'Aufruf: APOP Name Prüfsumme',
  usageTop: 'Aufruf: TOP Nachricht Zeilen',
  invalidLineCount: 'Ungültige Zeilenzahl.',
  invalidMsn: 'Ungültige Nachrichtennummer.',
  msnRequired: 'Nachrichtennummer fehlt.',
  noMaildrop: 'Kein Postfach geöffnet.',
  noSuchMessage: 'Keine solche Nachricht.',
  messageGone: 'Keine solche Nachricht (von einem anderen Programm entfernt).',
  alreadyDeleted: (msn) => `Nachricht ${msn} ist bereits gelöscht.`,
  messageDeleted: (msn) => `Nachricht ${msn} gelöscht.`,
  plaintextRefused: 'Klartext-Anmeldung über unverschlüsselte Verbindungen ist nicht erlaubt; bitte STLS verwenden.',
  stlsUnavailable: 'STLS ist auf diesem Port nicht verfügbar.',
  stlsAfterUser: 'STLS muss vor USER kommen.',
  tlsActive: 'TLS ist bereits aktiv.',
  tlsUnavailable: 'TLS ist nicht verfügbar.',
  userNeedsName: 'USER braucht einen Namen.',
  sendUserFirst: 'Bitte zuerst USER senden.',
  authFailed: 'Anmeldung fehlgeschlagen.',
  loggedIn: (n, size) => `Angemeldet, ${n} Nachrichten (${size} Oktette).`,
  loggingOut: (deleted, left) => `Abmeldung, ${deleted} gelöscht, ${left} verbleiben.`,
  maildropHas: (n, size) => `Das Postfach enthält ${n} Nachrichten (${size} Oktette).`,
  commitFailed: 'Einige gelöschte Nachrichten wurden nicht entfernt; bitte später erneut versuchen.',
  shuttingDown: 'Server wird beendet; bitte später erneut versuchen.',
  inUse: 'Das Postfach ist von einer anderen POP3-Sitzung gesperrt.',
  storageTemp: 'Vorübergehender Speicherfehler; bitte später erneut versuchen.',
  storagePerm: 'Das Postfach kann nicht geöffnet werden.',
  internalError: 'Interner Fehler; bitte später erneut versuchen.',
  loginDelay: (seconds) => `Anmeldungen sind alle ${seconds} Sekunden erlaubt; bitte später erneut versuchen.`,
  saslFollows: 'SASL-Verfahren folgen.',
  saslUnsupported: 'Anmeldeverfahren wird nicht unterstützt.',
  saslBadBase64: 'Ungültige Base64-Daten.',
  saslCancelled: 'Anmeldung abgebrochen.',
  saslUsage: 'Aufruf: AUTH Verfahren [Anfangsantwort]',
  saslTooLong: 'Anmeldedaten zu lang.',
  authTemp: 'Anmeldung vorübergehend nicht möglich; bitte später erneut versuchen.',
};

/** Languages by RFC 5646 tag; the first is the default. */
export const catalogues: Readonly<Record<string, Catalogue>> = { en, de };
export const DEFAULT_LANG = 'en';

/** Finds a supported language for a requested tag (case-insensitive; `de-AT` falls back to `de`). */
export function matchLanguage(tag: string): string | undefined {
  const t = tag.toLowerCase();
  if (Object.hasOwn(catalogues, t)) return t;
  const primary = t.split('-')[0];
  return Object.hasOwn(catalogues, primary) ? primary : undefined;
}
