/**
 * Exit codes of every `postern` command, from BSD sysexits.h: the language MTAs speak with delivery commands
 * (Postfix's local(8) and pipe(8) and Exim's pipe transport defer on EX_TEMPFAIL and bounce on the others) and
 * that service managers and scripts understand.
 */
export const EX_OK = 0;
/** Wrong arguments. */
export const EX_USAGE = 64;
/** The recipient (or the user named) does not exist: bounce. */
export const EX_NOUSER = 67;
/** The mailbox cannot take the message for good (over quota without `[quota] tempfail`, a refused mailbox). */
export const EX_CANTCREAT = 73;
/** Try again later: a transient store error, a broken config, over quota with `[quota] tempfail`. */
export const EX_TEMPFAIL = 75;
/** The configuration is wrong (the service should not be restarted in a loop). */
export const EX_CONFIG = 78;
