/**
 * Slot tables: each VIP's scheduler picks a slot number and a map turns (VIP, slot) into a backend. These functions
 * compute the tables; they depend only on backend names and weights, never on addresses, so that a backend whose
 * address is a Terraform token still gets a stable place, and never on randomness, so that synth is deterministic.
 */

export interface WeightedName {
  readonly name: string;
  readonly weight: number;
}

/** 32-bit FNV-1a; used for Maglev permutations and for hash seeds derived from configuration. */
export function fnv1a32(text: string, basis = 0x811c9dc5): number {
  let hash = basis >>> 0;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

const gcd = (a: number, b: number): number => (b === 0 ? a : gcd(b, a % b));

/** The weights of the backends that take new flows, divided by their greatest common divisor: 1000:1000 is 1:1. */
export function reducedWeights(backends: readonly WeightedName[]): WeightedName[] {
  const active = backends.filter((b) => b.weight > 0);
  const divisor = active.reduce((d, b) => gcd(b.weight, d), 0) || 1;
  return active.map((b) => ({ name: b.name, weight: b.weight / divisor }));
}

/**
 * The most slots one VIP's table may have: each slot is one element of a map on the balancer and one line of the
 * plan. 65,536 slots load in about 0.7 s; the Maglev table sizes stay below it.
 */
export const MAX_SLOTS_PER_VIP = 65536;

/**
 * Smooth weighted round robin (the nginx sequence): weights 1:2:3 give c b a c b c rather than a b b c c c, so
 * that consecutive new flows spread across backends while a whole cycle still splits exactly by weight. The
 * weights are reduced by their greatest common divisor first: the cycle is as short as the split allows.
 */
export function smoothWeightedSequence(backends: readonly WeightedName[], length?: number): string[] {
  const active = reducedWeights(backends);
  const total = active.reduce((sum, b) => sum + b.weight, 0);
  const current = active.map(() => 0);
  const sequence: string[] = [];
  // The sequence repeats every `total` steps, so a longer one is whole cycles, plus a part of one when `total` does not
  // divide `length`.
  for (let step = 0; step < (total === 0 ? 0 : (length ?? total)); step++) {
    let best = 0;
    active.forEach((b, i) => {
      current[i] += b.weight;
      if (current[i] > current[best]) best = i;
    });
    current[best] -= total;
    sequence.push(active[best].name);
  }
  return sequence;
}

/** Slots of a least-connections table at least: the runtime moves new flows in steps of one slot in this many. */
export const MANAGED_MIN_SLOTS = 120;

/**
 * How many slots a VIP's table gets for its algorithm and backends, without building it. Least connections tables,
 * which the runtime keeps re-weighting, have a fixed count: the smallest multiple of the (reduced) total weight that
 * is at least MANAGED_MIN_SLOTS, so that every backend has exactly its share until the runtime moves slots.
 */
export function slotCount(algorithm: string, backends: readonly WeightedName[], hashTableSize: number = DEFAULT_MAGLEV_SIZE): number {
  if (algorithm === 'consistent-hash') return backends.some((b) => b.weight > 0) ? hashTableSize : 0;
  const equal = algorithm === 'round-robin' || algorithm === 'least-connections';
  const total = equal ? backends.filter((b) => b.weight > 0).length : reducedWeights(backends).reduce((sum, b) => sum + b.weight, 0);
  if (total === 0 || !algorithm.includes('least-connections')) return total;
  return Math.ceil(MANAGED_MIN_SLOTS / total) * total;
}

/** Round robin treats every active backend alike; weight 0 still drains. */
export function equalShareSequence(backends: readonly WeightedName[]): string[] {
  return backends.filter((b) => b.weight > 0).map((b) => b.name);
}

/** Prime table sizes a consistent-hash VIP may use. */
export const MAGLEV_SIZES = [251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521] as const;
/**
 * The default size, fixed per VIP: a size that followed the number of backends would reshuffle almost every flow
 * when a backend is added or drained across a size step. 1021 slots keep each of up to ~50 backends within ±1 slot
 * of its share and move about 12% of flows when one of ten backends goes (the ideal is 10%).
 */
export const DEFAULT_MAGLEV_SIZE = 1021;

/**
 * Maglev lookup table (Eisenbud et al., NSDI 2016) with weights: each backend walks its own permutation of the
 * slots and claims the next free one; a backend takes turns in proportion to its weight. Removing one of N
 * backends moves about 1/N of the slots instead of nearly all of them, as mod-N hashing would.
 */
export function maglevTable(backends: readonly WeightedName[], size: number = DEFAULT_MAGLEV_SIZE): string[] {
  const active = [...backends].filter((b) => b.weight > 0).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (active.length === 0) return [];
  const maxWeight = active.reduce((max, b) => Math.max(max, b.weight), 0);
  const offset = active.map((b) => fnv1a32(b.name, 0x811c9dc5) % size);
  const skip = active.map((b) => (fnv1a32(b.name, 0x050c5d1f) % (size - 1)) + 1);
  const next = active.map(() => 0);
  const credit = active.map(() => 0);
  const table: (string | undefined)[] = new Array(size).fill(undefined);
  let filled = 0;
  while (filled < size) {
    for (let i = 0; i < active.length && filled < size; i++) {
      credit[i] += active[i].weight / maxWeight;
      if (credit[i] < 1) continue;
      credit[i] -= 1;
      let slot = (offset[i] + next[i] * skip[i]) % size;
      while (table[slot] !== undefined) {
        next[i]++;
        slot = (offset[i] + next[i] * skip[i]) % size;
      }
      table[slot] = active[i].name;
      next[i]++;
      filled++;
    }
  }
  return table as string[];
}
