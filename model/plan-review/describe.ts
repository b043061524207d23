import type { BackendSpec, VipSpec } from '../spec';
import { vipKey } from '../vip-key';
import { Inline, code, codeList, count, showField } from './inline';
import { fieldChanges, type BackendHostDiff, type BalancerDiff, type BackendChange, type FieldChange, type VipChange } from './spec-diff';

/** One line of a host's change list, with the lines under it and, for the summary table, a shorter form. */
export interface ChangeItem {
  readonly text: Inline;
  readonly children?: readonly ChangeItem[];
  readonly short?: Inline;
}

/** `weight: 3 → 0 (drained)`: a field change, with what a weight change means for the backend. */
export function describeField(change: FieldChange): Inline {
  const note =
    change.field === 'weight' && change.after === 0 ? ' (drained: no new flows)' : change.field === 'weight' && change.before === 0 ? ' (back in service)' : '';
  return [`${change.field} ${showField(change.before)} → ${showField(change.after)}${note}`];
}

const describeFields = (fields: readonly FieldChange[]): Inline => fields.flatMap((f, i) => [...(i ? ['; '] : []), ...describeField(f)]);

function backendSummary(b: BackendSpec): string {
  return `${b.ip}, weight ${b.weight}${b.mac ? `, MAC ${b.mac}` : ''}`;
}

/** The fields vipSummary spells out; any other field a VIP sets (mssClamp, hashTableSize, …) follows generically. */
const SUMMARISED = ['path', 'name', 'ip', 'port', 'protocol', 'mode', 'algorithm', 'flowTimeoutSec', 'backends'];

export function vipSummary(vip: VipSpec): string {
  const more = fieldChanges(undefined, vip, SUMMARISED).map((f) => `, ${f.field} ${showField(f.after)}`);
  return `${vipKey(vip)}, ${vip.mode}, ${vip.algorithm}, flow timeout ${vip.flowTimeoutSec}s${more.join('')}`;
}

function backendItems(change: VipChange): ChangeItem[] {
  return [
    ...change.backendsAdded.map((b) => ({ text: ['backend ', code(b.name), ` added (${backendSummary(b)})`] })),
    ...change.backendsRemoved.map((b) => ({ text: ['backend ', code(b.name), ` removed (${backendSummary(b)})`] })),
    ...change.backendsChanged.map((b: BackendChange) => ({ text: ['backend ', code(b.name), ': ', ...describeFields(b.fields)] })),
  ];
}

/** Every change on a balancer, VIP by VIP. */
export function balancerItems(diff: BalancerDiff): ChangeItem[] {
  return [
    ...diff.fields.map((f) => ({ text: describeField(f) })),
    ...diff.vipsAdded.map((v) => ({
      text: ['VIP ', code(v.name), ` added (${vipSummary(v)}) with ${count(v.backends.length, 'backend')}: `, ...codeList(v.backends.map((b) => b.name))],
      short: ['VIP ', code(v.name), ' added'],
    })),
    ...diff.vipsRemoved.map((v) => ({ text: ['VIP ', code(v.name), ` removed (${vipKey(v)})`], short: ['VIP ', code(v.name), ' removed'] })),
    ...diff.vipsChanged.map((v) => {
      const children = [...v.fields.map((f) => ({ text: describeField(f) })), ...backendItems(v)];
      const short: Inline = children.length === 1 ? ['VIP ', code(v.name), ': ', ...children[0].text] : ['VIP ', code(v.name), `: ${children.length} changes`];
      return { text: ['VIP ', code(v.name), ` (${vipKey(v.before)}) changed:`], children, short };
    }),
  ];
}

/** Every change on a backend host: VIP addresses on lo and ipip0, sysctls, the tunnel, its settings. */
export function backendHostItems(diff: BackendHostDiff): ChangeItem[] {
  const byIp = (list: BackendHostDiff['addressesAdded']) => {
    const devices = new Map<string, string[]>();
    for (const a of list) devices.set(a.ip, [...(devices.get(a.ip) ?? []), a.dev]);
    return [...devices.entries()];
  };
  return [
    ...diff.fields.map((f) => ({ text: describeField(f) })),
    ...(diff.tunnel ? [{ text: ['tunnel ', code('ipip0'), ` ${diff.tunnel === 'added' ? 'created' : 'deleted'}`] }] : []),
    ...byIp(diff.addressesAdded).map(([ip, devs]) => ({ text: [`VIP ${ip} added to `, ...codeList(devs)] })),
    ...byIp(diff.addressesRemoved).map(([ip, devs]) => ({ text: [`VIP ${ip} removed from `, ...codeList(devs)] })),
    ...diff.sysctls.map((s) => ({
      text: [
        'sysctl ',
        code(s.key),
        s.before === undefined
          ? ` set to ${s.after}`
          : s.after === undefined
            ? `: no longer set (was ${s.before}; remove restores the original)`
            : `: ${s.before} → ${s.after}`,
      ],
    })),
    ...diff.servicesChanged.map((s) => ({ text: [`VIP ${s.vip}: `, ...describeFields(s.fields)] })),
  ];
}

/** A short reason for the summary table: the first changes, then how many more. */
export function shortReason(items: readonly ChangeItem[], limit = 3): Inline {
  const shown = items.slice(0, limit).flatMap((item, i) => [...(i ? ['; '] : []), ...(item.short ?? item.text)]);
  return items.length > limit ? [...shown, `; and ${items.length - limit} more`] : shown;
}
