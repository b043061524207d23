import type { BalancerSpec } from '../spec';
import { vipKey } from '../vip-key';
import type { HostResource } from './hosts';
import { Inline, code, codeList } from './inline';
import type { BalancerDiff, BackendHostDiff } from './spec-diff';

/** What a reviewer must not miss, as data (what, which host) and text. */
export type WarningKind =
  | 'vip-stops-serving'
  | 'vip-moves'
  | 'backend-removed'
  | 'backend-drained'
  | 'algorithm-change'
  | 'host-destroyed'
  | 'backend-still-used'
  | 'known-after-apply'
  | 'unreadable-spec'
  | 'plan-incomplete';

export interface ReviewWarning {
  readonly kind: WarningKind;
  /** The host (balancer or backend host name) it concerns, when it concerns one. */
  readonly host?: string;
  readonly text: Inline;
}

const warn = (kind: WarningKind, host: string | undefined, text: Inline): ReviewWarning => ({ kind, host, text });

/** Warnings about one balancer's VIPs and backends. */
export function balancerWarnings(host: string, diff: BalancerDiff, destroyed: boolean): ReviewWarning[] {
  const warnings: ReviewWarning[] = [];
  const addedKeys = new Set(diff.vipsAdded.map(vipKey));
  for (const vip of diff.vipsRemoved) {
    if (destroyed) continue;
    const successor = diff.vipsAdded.find((v) => vipKey(v) === vipKey(vip));
    if (successor) continue;
    warnings.push(warn('vip-stops-serving', host, ['VIP ', code(vip.name), ` (${vipKey(vip)}) stops serving: it is removed from balancer `, code(host)]));
  }
  for (const change of diff.vipsChanged) {
    const name = code(change.name);
    const [before, after] = [change.before, change.after];
    if (vipKey(before) !== vipKey(after) && !addedKeys.has(vipKey(before))) {
      warnings.push(warn('vip-moves', host, ['VIP ', name, ` moves from ${vipKey(before)} to ${vipKey(after)}: clients of the old address lose service`]));
    }
    if (before.backends.some((b) => b.weight > 0) && after.backends.every((b) => b.weight === 0)) {
      warnings.push(warn('vip-stops-serving', host, ['VIP ', name, ` (${vipKey(after)}) stops taking new flows: every backend has weight 0`]));
    }
    if (before.algorithm !== after.algorithm) {
      warnings.push(
        warn('algorithm-change', host, [
          'VIP ',
          name,
          `: algorithm ${before.algorithm} → ${after.algorithm} reschedules flows: new flows, and flows whose entry expired, are placed by the new algorithm (established flows keep their backend)`,
        ]),
      );
    }
    for (const b of change.backendsRemoved) {
      warnings.push(warn('backend-removed', host, ['backend ', code(b.name), ` (${b.ip}) is removed from VIP `, name, ': it gets no new flows']));
    }
    for (const b of change.backendsChanged) {
      if (b.before.weight > 0 && b.after.weight === 0) {
        warnings.push(
          warn('backend-drained', host, [
            'backend ',
            code(b.name),
            ` (${b.after.ip}) of VIP `,
            name,
            ` is drained (weight ${b.before.weight} → 0): no new flows, established flows stay`,
          ]),
        );
      }
    }
  }
  return warnings;
}

/** A destroyed host: what `tula-dsr remove` undoes, and whether a balancer still sends it traffic. */
export function destroyedWarnings(host: HostResource, stillUsing: readonly BalancerSpec[], backendDiff?: BackendHostDiff): ReviewWarning[] {
  const before = host.before.state === 'known' ? host.before.spec : undefined;
  if (host.kind === 'balancer') {
    const vips = before?.kind === 'balancer' ? before.vips.map((v) => v.name) : [];
    const stop: Inline = vips.length ? ['; VIPs ', ...codeList(vips), ' stop serving'] : [];
    return [warn('host-destroyed', host.name, ['balancer ', code(host.name), ' is destroyed: ', code('tula-dsr remove'), ' deletes its nft table', ...stop])];
  }
  const removed = backendDiff?.addressesRemoved ?? [];
  const ips = [...new Set(removed.map((a) => a.ip))];
  const devices = [...new Set(removed.map((a) => a.dev))];
  const takes: Inline = ips.length ? [` takes VIPs ${ips.join(', ')} off `, ...codeList(devices), ' and restores its sysctls'] : [' restores its sysctls'];
  const warnings = [warn('host-destroyed', host.name, ['backend host ', code(host.name), ' is destroyed: ', code('tula-dsr remove'), ...takes])];
  const address = before?.kind === 'backend' ? before.address : undefined;
  for (const balancer of address ? stillUsing : []) {
    for (const vip of balancer.vips) {
      if (vip.backends.some((b) => b.ip === address && b.weight > 0)) {
        warnings.push(
          warn('backend-still-used', host.name, [
            'balancer ',
            code(balancer.name),
            ' still sends new flows of VIP ',
            code(vip.name),
            ` to ${address}, whose host `,
            code(host.name),
            ' is destroyed',
          ]),
        );
      }
    }
  }
  return warnings;
}

export function knownAfterApplyWarning(host: HostResource): ReviewWarning {
  const waits: Inline = host.references.length ? [' (it uses ', ...codeList(host.references), ')'] : [];
  return warn('known-after-apply', host.name, [
    code(host.name),
    ': its spec holds values known only after apply',
    ...waits,
    ': this review cannot show its VIP and backend changes; the agent checks them at apply time',
  ]);
}

export function unreadableWarning(host: HostResource, problem: string): ReviewWarning {
  return warn('unreadable-spec', host.name, [code(host.name), `: ${problem}; only the exact text diff is shown`]);
}

export function incompleteWarning(errored: boolean): ReviewWarning {
  return warn(
    'plan-incomplete',
    undefined,
    errored
      ? ['Terraform reported errors while planning: this plan is not complete']
      : ['this plan is not complete: Terraform will need another plan after this apply'],
  );
}
