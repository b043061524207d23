/**
 * A small description of one nft table: enough to render it two ways from the same data, as a declarative file
 * (for review in the plan and for loading at boot) and as an in-place reload transaction (for apply).
 */
export interface NftDefine {
  readonly name: string;
  /** The value, or null when only the host can tell (a MAC resolved at apply time). */
  readonly value: string | null;
  readonly comment: string;
}

/** One element of a set or map, with the VIP it belongs to (none for elements shared by every VIP). */
export interface NftElement {
  /** As nft writes it: `key` for a set, `key : value` for a map. */
  readonly text: string;
  /** Name of the VIP that owns the element; the review and incremental updates group elements by it. */
  readonly vip?: string;
  /** Id of the slot pool that owns the element (elements shared by the VIPs of one pool). */
  readonly pool?: string;
}

export interface NftMap {
  readonly name: string;
  /** A set (its `type` and elements have no `: value` part) rather than a map. */
  readonly set?: boolean;
  /** Each element counts the packets and bytes that match it (a reload that flushes the set resets them). */
  readonly counter?: boolean;
  /** `type …` clause, e.g. `ipv4_addr . inet_service : verdict`; or, with `typeof`, the expressions whose types it has. */
  readonly type: string;
  /**
   * `type` holds expressions (`typeof meta priority . numgen inc mod 2 : ether daddr`): the only way to declare a key
   * that concatenates a register with a computed number, which `type mark . mark` refuses as a datatype mismatch.
   */
  readonly typeof?: boolean;
  /**
   * A reload never flushes this set: it adds the elements that are missing and deletes, by key, those the host has
   * and the table does not want (see NftTableFacts.elements), so that every other element keeps its counter.
   */
  readonly keepElements?: boolean;
  /**
   * The named counters this set's element counters replace, by prefix: at the reload that upgrades a table, each
   * new element starts from the count of the named counter `<takesOver><owner VIP>` the table had.
   */
  readonly takesOver?: string;
  /** Dynamic maps hold state written by the packet path (flows); a reload never flushes them. */
  readonly dynamic?: { readonly timeoutSec: number; readonly size: number };
  /**
   * A static map's capacity. The kernel sizes its hash table from it up front instead of growing it element by
   * element, but refuses elements beyond it, so it comes from the element count (see staticMapSize).
   */
  readonly size?: number;
  readonly elements: readonly NftElement[];
}

export interface NftChain {
  readonly name: string;
  /** Base chain clause, e.g. `type filter hook ingress device "eth0" priority -300; policy accept;`. */
  readonly hook?: string;
  readonly rules: readonly string[];
}

export interface NftTable {
  readonly family: 'netdev' | 'ip' | 'inet';
  readonly name: string;
  readonly header: readonly string[];
  readonly defines: readonly NftDefine[];
  readonly counters: readonly string[];
  readonly maps: readonly NftMap[];
  readonly chains: readonly NftChain[];
}

/** What the host's table holds now, as far as a reload needs to know (from `nft -j list table`). */
export interface NftTableFacts {
  readonly exists: boolean;
  readonly counters: readonly string[];
  readonly maps: readonly string[];
  readonly sets: readonly string[];
  readonly chains: readonly string[];
  /** The declared `size` of each map and set that has one. */
  readonly sizes: Readonly<Record<string, number>>;
  /** The hook clause of each base chain, to detect a change that a reload cannot make in place. */
  readonly hooks: Readonly<Record<string, string>>;
  /** The element keys of each set that keeps its elements (NftMap.keepElements), as nft or the renderer writes them. */
  readonly elements?: Readonly<Record<string, readonly string[]>>;
  /** Packets and bytes of named counters, read where a set takes them over (NftMap.takesOver). */
  readonly counterValues?: Readonly<Record<string, { readonly packets: number; readonly bytes: number }>>;
}
