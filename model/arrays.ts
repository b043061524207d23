/**
 * Appends every item to `target`. `target.push(...items)` passes each item as a function argument, and V8 throws
 * "Maximum call stack size exceeded" somewhere above 100,000 of them; slot tables, map elements and issues have no
 * such bound.
 */
export function pushAll<T>(target: T[], items: Iterable<T>): T[] {
  for (const item of items) target.push(item);
  return target;
}

/** The largest value, or `empty` for none; `Math.max(...values)` has the same argument limit as above. */
export function maxOf(values: Iterable<number>, empty = -Infinity): number {
  let max = empty;
  for (const value of values) if (value > max) max = value;
  return max;
}
