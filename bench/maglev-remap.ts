import { DEFAULT_MAGLEV_SIZE, maglevTable } from '../model';

/**
 * Share of flows that change backend when one of ten backends is removed or an eleventh added: Maglev (our
 * consistent-hash slot tables) against mod-N hashing. A flow's slot is uniform, so the share of slots whose
 * backend changes is the share of flows remapped.
 */
export function remapFractions(n = 10): { maglevRemove: number; maglevAdd: number; modRemove: number; modAdd: number; tableSize: number } {
  const names = (count: number) => Array.from({ length: count }, (_, i) => ({ name: `be${i}`, weight: 1 }));
  const size = DEFAULT_MAGLEV_SIZE;
  const base = maglevTable(names(n), size);
  const removed = maglevTable(
    names(n).filter((b) => b.name !== 'be3'),
    size,
  );
  const added = maglevTable(names(n + 1), size);
  const moved = (a: string[], b: string[]) => a.filter((x, i) => x !== b[i]).length / a.length;
  // mod-N over many simulated flow hashes
  const flows = 100_000;
  let modRemove = 0;
  let modAdd = 0;
  const survivors = names(n)
    .map((b) => b.name)
    .filter((x) => x !== 'be3');
  for (let h = 0; h < flows; h++) {
    const hash = Math.imul(h + 1, 0x9e3779b1) >>> 0;
    const before = `be${hash % n}`;
    if (before !== survivors[hash % (n - 1)]) modRemove++;
    if (before !== `be${hash % (n + 1)}`) modAdd++;
  }
  return { maglevRemove: moved(base, removed), maglevAdd: moved(base, added), modRemove: modRemove / flows, modAdd: modAdd / flows, tableSize: size };
}
