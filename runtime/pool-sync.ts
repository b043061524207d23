import {
  BalancerFacts,
  BalancerSpec,
  NftElement,
  NftTable,
  Pool,
  PoolPolicy,
  buildBalancerTable,
  groupPools,
  poolClassid,
  poolName,
  renderOwnedUpdate,
} from '../model';
import type { NftListedElement, NftRunner } from './nft';

/**
 * Keeps the slot pools the runtime manages (their `_rt` maps: slots and live backends) in line with a policy (which
 * backends take new flows, and with which weights), with one small nft transaction per change that touches only the
 * elements of the pools whose slots moved. The slot tables come from the same renderer as synth and the agent.
 */
export interface SyncResult {
  /** Ids (8 hex digits) of the pools whose elements changed. */
  readonly pools: readonly string[];
  /** Elements deleted and added. */
  readonly elements: number;
  readonly ms: number;
}

/** The table with every `$name` in element texts replaced by its define's value, so it compares with a listing. */
export function resolveDefines(table: NftTable): NftTable {
  const values = new Map(table.defines.map((d) => [d.name, d.value]));
  const resolve = (text: string) => text.replace(/\$([A-Za-z0-9_]+)/g, (whole, name: string) => values.get(name) ?? whole);
  return { ...table, defines: [], maps: table.maps.map((m) => ({ ...m, elements: m.elements.map((e) => ({ ...e, text: resolve(e.text) })) })) };
}

const mark = (v: string) => (/^\d+$/.test(v) ? `0x${Number(v).toString(16).padStart(8, '0')}` : v);

/** A listed `_rt` element in the renderer's own text form (nft lists marks in decimal, the renderer in hex). */
export function listedText(mapName: string, element: NftListedElement): string {
  const l3 = mapName.includes('_l3');
  if (mapName.startsWith('slots_')) return `${element.key[0]} . ${element.key[1]} : ${l3 ? mark(element.value ?? '') : element.value}`;
  return `${element.key[0]} . ${l3 ? mark(element.key[1]) : element.key[1]}`;
}

export class PoolSync {
  /** What the runtime last loaded (resolved), or null: then the next sync reads the live maps first. */
  private applied: NftTable | null = null;

  constructor(private readonly nft: NftRunner) {}

  /** Forgets what was applied: the next sync starts from the live maps (after the agent reloaded the table). */
  invalidate(): void {
    this.applied = null;
  }

  /** `pools`: groupPools(spec.vips), which the caller keeps (grouping ten thousand VIPs takes a fifth of a second). */
  async sync(spec: BalancerSpec, facts: BalancerFacts, policy: PoolPolicy, pools: readonly Pool[] = groupPools(spec.vips)): Promise<SyncResult> {
    const started = Date.now();
    const managed = new Set(pools.filter((p) => p.managed).map((p) => poolName(p.id)));
    if (!managed.size) return { pools: [], elements: 0, ms: 0 };
    const after = resolveDefines(buildBalancerTable(spec, facts, [], policy, { pools, managedOnly: true }));
    const before = this.applied ?? (await this.liveTable(after, managed));
    const owned = (e: NftElement) => e.pool !== undefined && managed.has(e.pool);
    const text = renderOwnedUpdate(before, after, owned);
    if (text === null) throw new Error('the loaded table lacks the maps of a managed pool: the agent must reload it (run tula-dsr apply)');
    const statements = text.split('\n').filter((l) => /^(add|delete) element /.test(l));
    if (statements.length) {
      try {
        await this.nft.apply(text);
      } catch (error) {
        // the table is not what the runtime thought (the agent reloaded it meanwhile): read it again next time
        this.invalidate();
        throw error;
      }
    }
    this.applied = after;
    const changed = [...managed].filter((id) => statements.some((l) => l.includes(` ${poolClassidOf(id)} `) || l.includes(`{ ${poolClassidOf(id)} `)));
    return { pools: changed, elements: statements.reduce((n, l) => n + l.split(',').length, 0), ms: Date.now() - started };
  }

  /** `after` with the managed pools' `_rt` elements as the kernel holds them now. */
  private async liveTable(after: NftTable, managed: ReadonlySet<string>): Promise<NftTable> {
    const maps = await Promise.all(
      after.maps.map(async (m) => {
        if (!m.name.endsWith('_rt')) return m;
        const listed = (await this.nft.list(m.set ? 'set' : 'map', m.name)) ?? [];
        const poolOf = new Map([...managed].map((id) => [poolClassidOf(id), id]));
        const elements: NftElement[] = listed.map((e) => ({ text: listedText(m.name, e), pool: poolOf.get(e.key[0]) }));
        return { ...m, elements };
      }),
    );
    return { ...after, maps };
  }
}

const poolClassidOf = (name: string) => poolClassid(parseInt(name, 16));
