import { planBackendHost, type HostAddress } from '../backend-host';
import type { BackendHostSpec, BackendSpec, BalancerSpec, ServiceSpec, VipSpec } from '../spec';
import { vipKey } from '../vip-key';

/** One field that differs; `undefined` on a side means the field is not set there. Nested fields are dotted (ssh.port). */
export interface FieldChange {
  readonly field: string;
  readonly before?: unknown;
  readonly after?: unknown;
}

/**
 * Every field that differs between two spec objects, named generically so that fields added to the specs later
 * (a VIP's health check, say) are described without code here. Nested plain objects are compared field by field;
 * arrays and scalars as values.
 */
export function fieldChanges(before: object | undefined, after: object | undefined, skip: readonly string[] = []): FieldChange[] {
  const a = flatten(before ?? {});
  const b = flatten(after ?? {});
  const fields = [...new Set([...a.keys(), ...b.keys()])].filter((f) => !skip.includes(f.split('.')[0])).sort();
  return fields.filter((f) => JSON.stringify(a.get(f)) !== JSON.stringify(b.get(f))).map((field) => ({ field, before: a.get(field), after: b.get(field) }));
}

function flatten(value: object, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  for (const [key, v] of Object.entries(value)) {
    if (v !== null && typeof v === 'object' && !Array.isArray(v)) flatten(v as object, `${prefix}${key}.`, out);
    else if (v !== undefined) out.set(`${prefix}${key}`, v);
  }
  return out;
}

/** Items of two lists matched by a key: added, removed, and pairs present on both sides. */
function match<T>(before: readonly T[], after: readonly T[], key: (item: T) => string): { added: T[]; removed: T[]; both: [T, T][] } {
  const old = new Map(before.map((item) => [key(item), item]));
  const now = new Map(after.map((item) => [key(item), item]));
  return {
    added: after.filter((item) => !old.has(key(item))),
    removed: before.filter((item) => !now.has(key(item))),
    both: after.flatMap((item): [T, T][] => (old.has(key(item)) ? [[old.get(key(item))!, item]] : [])),
  };
}

export interface BackendChange {
  readonly name: string;
  readonly before: BackendSpec;
  readonly after: BackendSpec;
  readonly fields: readonly FieldChange[];
}

export interface VipChange {
  readonly name: string;
  readonly before: VipSpec;
  readonly after: VipSpec;
  readonly fields: readonly FieldChange[];
  readonly backendsAdded: readonly BackendSpec[];
  readonly backendsRemoved: readonly BackendSpec[];
  readonly backendsChanged: readonly BackendChange[];
}

export interface BalancerDiff {
  /** The balancer's own fields (interface, address, ssh.*, …). */
  readonly fields: readonly FieldChange[];
  readonly vipsAdded: readonly VipSpec[];
  readonly vipsRemoved: readonly VipSpec[];
  readonly vipsChanged: readonly VipChange[];
}

/** Identity fields: a construct's name and path make its Terraform address, so they never change in place. */
const IDENTITY = ['kind', 'name', 'path'];

/** What changes on a balancer, VIP by VIP (matched by name) and backend by backend; an absent side is empty. */
export function diffBalancer(before: BalancerSpec | undefined, after: BalancerSpec | undefined): BalancerDiff {
  const vips = match(before?.vips ?? [], after?.vips ?? [], (v) => v.name);
  const vipsChanged = vips.both.flatMap(([old, now]): VipChange[] => {
    const backends = match(old.backends, now.backends, (b) => b.name);
    const backendsChanged = backends.both
      .map(([b0, b1]) => ({ name: b1.name, before: b0, after: b1, fields: fieldChanges(b0, b1, IDENTITY) }))
      .filter((c) => c.fields.length > 0);
    const fields = fieldChanges(old, now, [...IDENTITY, 'backends']);
    if (!fields.length && !backends.added.length && !backends.removed.length && !backendsChanged.length) return [];
    return [{ name: now.name, before: old, after: now, fields, backendsAdded: backends.added, backendsRemoved: backends.removed, backendsChanged }];
  });
  return {
    fields: before && after ? fieldChanges(before, after, [...IDENTITY, 'vips']) : [],
    vipsAdded: vips.added,
    vipsRemoved: vips.removed,
    vipsChanged,
  };
}

export interface SysctlChange {
  readonly key: string;
  readonly before?: string;
  readonly after?: string;
}

export interface ServiceChange {
  /** The VIP's ip, protocol and port (`10.0.1.100 tcp/80`). */
  readonly vip: string;
  readonly fields: readonly FieldChange[];
}

export interface BackendHostDiff {
  /** The host's own fields (address, persist, ssh.*, …). */
  readonly fields: readonly FieldChange[];
  readonly addressesAdded: readonly HostAddress[];
  readonly addressesRemoved: readonly HostAddress[];
  readonly sysctls: readonly SysctlChange[];
  readonly tunnel?: 'added' | 'removed';
  /** VIPs served on both sides whose settings changed (mode, MSS clamp, …). */
  readonly servicesChanged: readonly ServiceChange[];
}

const addressKey = (a: HostAddress) => `${a.ip}/${a.prefix} ${a.dev}`;

/** What changes on a backend host: the VIP addresses on lo and ipip0, the sysctls, the tunnel, its settings. */
export function diffBackendHost(before: BackendHostSpec | undefined, after: BackendHostSpec | undefined): BackendHostDiff {
  const planOf = (spec: BackendHostSpec | undefined) => (spec ? planBackendHost(spec) : undefined);
  const [old, now] = [planOf(before), planOf(after)];
  const addresses = match(old?.addresses ?? [], now?.addresses ?? [], addressKey);
  const sysctls = match(old?.sysctls ?? [], now?.sysctls ?? [], (s) => s.key);
  const services = match<ServiceSpec>(before?.services ?? [], after?.services ?? [], vipKey);
  return {
    fields: before && after ? fieldChanges(before, after, [...IDENTITY, 'services']) : [],
    addressesAdded: addresses.added,
    addressesRemoved: addresses.removed,
    sysctls: [
      ...sysctls.removed.map((s) => ({ key: s.key, before: s.value })),
      ...sysctls.added.map((s) => ({ key: s.key, after: s.value })),
      ...sysctls.both.filter(([s0, s1]) => s0.value !== s1.value).map(([s0, s1]) => ({ key: s1.key, before: s0.value, after: s1.value })),
    ],
    tunnel: old?.tunnel && !now?.tunnel ? 'removed' : !old?.tunnel && now?.tunnel ? 'added' : undefined,
    servicesChanged: services.both
      .map(([s0, s1]) => ({ vip: vipKey(s1), fields: fieldChanges(s0, s1, ['path', 'ip', 'port', 'protocol']) }))
      .filter((c) => c.fields.length > 0),
  };
}
