/**
 * Sorts Maildir file names into delivery order: by the leading seconds, then the `M<usec>` field, as numbers.
 * A plain string sort is wrong within one second because `M<usec>` is not zero-padded (M99999 sorts after
 * M123456), which made order-dependent tests fail now and then.
 */
export function sortByDelivery(names: string[]): string[] {
  const key = (n: string) =>
    n
      .match(/^(\d+)\.M(\d+)P/)
      ?.slice(1)
      .map(Number) ?? [0, 0];
  return names.sort((a, b) => key(a)[0] - key(b)[0] || key(a)[1] - key(b)[1] || (a < b ? -1 : a > b ? 1 : 0));
}
