import { BackendHostSpec, BACKEND_TUNNEL, BACKEND_UNIT, MSS_TABLE, planBackendHost } from '../../model';
import type { HostFacts } from '../facts/gather';
import { StateAddress, statePath } from '../state';
import {
  addressTasks,
  ancestorDirs,
  fileTask,
  hasAddress,
  moduleTask,
  ownedAddresses,
  staleAddressTasks,
  staleFileTasks,
  sysctlTask,
  l3Ipv6Refusal,
  tunnelTask,
  unitTask,
} from './common';
import { HostPlanResult, finishHostPlan } from './host-plan';
import { NftWant, nftTableTask } from './nft';
import { Task, changed, failed, nftChange } from './task';
import { cmd, removeTunnelStep, sysctlStep } from './steps';

/**
 * A VIP address that the spec no longer wants stays on the host for this long before a later apply removes it.
 * Within one `terraform apply` the backend hosts are applied before the balancer, so removing it at once would
 * reset the flows the balancer still sends there; established flows also get time to finish.
 */
export const RETIRE_GRACE_SEC = 300;

export const BACKEND_STATE = statePath('backend');

/** The facts bring every file a backend host can carry (its spec's and earlier generations'), whatever the spec. */
export function backendFactsRequest() {
  return {
    statePath: BACKEND_STATE,
    files: ALL_BACKEND_FILES,
    dirs: [...new Set([...ALL_BACKEND_FILES, BACKEND_STATE].flatMap(ancestorDirs))],
    sysctls: ['net.ipv4.conf.all.arp_ignore', 'net.ipv4.conf.all.arp_announce', 'net.ipv4.conf.all.rp_filter', `net.ipv4.conf.${BACKEND_TUNNEL}.rp_filter`],
    nftTables: [{ family: 'ip', name: MSS_TABLE }],
  };
}

/** Every file a backend host can carry, so that facts always report the ones left by an earlier generation. */
const ALL_BACKEND_FILES = planBackendHost({
  kind: 'backend',
  path: 'x',
  name: 'x',
  persist: true,
  address: '10.0.0.1',
  ssh: { host: 'x', port: 22, user: 'root' },
  services: [{ path: 'x', ip: '10.0.0.2', port: 1, protocol: 'tcp', mode: 'l3', mssClamp: 1440 }],
}).files.map((f) => f.path);

export function planBackendTasks(spec: BackendHostSpec, facts: HostFacts, specText: string, generation: string): HostPlanResult {
  const plan = planBackendHost(spec);
  const state = facts.state;
  const tasks: Task[] = [];
  const needed = ['ip', 'sysctl', 'flock', 'sha256sum', 'awk', 'sed', ...(plan.mssClamp ? ['nft'] : [])];
  const missing = facts.missingTools.filter((t) => needed.includes(t));
  if (missing.length)
    return {
      tasks: [failed('tools', `missing on the host: ${missing.join(', ')} (install iproute2, procps, util-linux, nftables, coreutils)`)],
      writtenFiles: [],
    };

  const refused = l3Ipv6Refusal(spec.services);
  if (refused.length) return { tasks: refused, writtenFiles: [] };

  const originals = { ...(state?.originalSysctls ?? {}) };
  // ARP sysctls first: a VIP on lo before arp_ignore=1 would make this host answer ARP for it.
  for (const s of plan.sysctls.filter((x) => !x.device)) {
    if (!(s.key in originals)) originals[s.key] = facts.sysctls[s.key] ?? null;
    tasks.push(sysctlTask(s.key, s.value, facts));
  }
  const wantedKeys = new Set(plan.sysctls.map((s) => s.key));
  for (const [key, original] of Object.entries(state?.originalSysctls ?? {})) {
    if (wantedKeys.has(key)) continue;
    delete originals[key];
    if (original !== null && facts.sysctls[key] !== original) {
      tasks.push(changed(`sysctl ${key}=${original}`, 'no longer needed: original value restored', [sysctlStep(key, original, facts.sysctls[key] ?? null)]));
    }
  }

  for (const module of plan.modules) tasks.push(moduleTask(module, facts));
  if (plan.tunnel) tasks.push(tunnelTask({ ...plan.tunnel, remote: 'any' }, facts));
  const tunnelExisted = !!facts.ip.links[BACKEND_TUNNEL];
  for (const s of plan.sysctls.filter((x) => x.device)) tasks.push(sysctlTask(s.key, s.value, facts, !tunnelExisted));
  tasks.push(...addressTasks(plan.addresses, facts));

  // Addresses of earlier generations retire first and go after the grace period.
  const wantedKeysA = new Set(plan.addresses.map((a) => `${a.ip}/${a.prefix} ${a.dev}`));
  const retained: StateAddress[] = [];
  const expired: StateAddress[] = [];
  for (const a of state?.addresses ?? []) {
    if (wantedKeysA.has(`${a.ip}/${a.prefix} ${a.dev}`) || !hasAddress(facts, a)) continue;
    const retiredAt = a.retiredAt ?? facts.now;
    if (facts.now - retiredAt >= RETIRE_GRACE_SEC) expired.push(a);
    else retained.push({ ...a, retiredAt });
  }
  tasks.push(...staleAddressTasks(expired, facts));
  for (const a of retained)
    tasks.push({
      name: `address ${a.ip}/${a.prefix} dev ${a.dev}`,
      status: 'ok',
      detail: `retiring: no longer wanted, removed by an apply after ${RETIRE_GRACE_SEC}s so open flows finish`,
      steps: [],
    });

  const nftWants: NftWant[] = plan.mssClamp ? [{ family: 'ip', name: MSS_TABLE, desired: plan.mssClamp.ruleset, load: plan.mssClamp.ruleset }] : [];
  for (const want of nftWants) tasks.push(nftTableTask(want, facts, state, 'MSS clamp for L3 VIPs'));
  if (!plan.mssClamp && facts.nft[`ip ${MSS_TABLE}`]?.table.exists && state?.nft[`ip ${MSS_TABLE}`]) {
    tasks.push(
      nftChange(`nft table ip ${MSS_TABLE}`, 'no L3 VIPs left: removed', [
        { run: cmd('nft', 'delete', 'table', 'ip', MSS_TABLE), undo: ':', allOrNothing: true },
      ]),
    );
  }
  if (!plan.tunnel && state?.tunnels.length && facts.ip.links[BACKEND_TUNNEL] && !retained.some((a) => a.dev === BACKEND_TUNNEL)) {
    const t = state.tunnels[0];
    tasks.push(changed(`tunnel ${t.name}`, 'no L3 VIPs left: removed', [removeTunnelStep(t.name, t.local, t.remote)]));
  }

  const fileTasks = plan.files.map((f) => fileTask(f, facts));
  tasks.push(
    ...fileTasks,
    ...staleFileTasks(
      state,
      plan.files.map((f) => f.path),
      facts,
    ),
  );
  if (plan.unit)
    tasks.push(
      unitTask(
        plan.unit,
        facts,
        state,
        fileTasks.some((t) => t.status === 'changed'),
      ),
    );

  const keepTunnel = plan.tunnel ?? (retained.some((a) => a.dev === BACKEND_TUNNEL) ? state?.tunnels[0] : undefined);
  return finishHostPlan(
    tasks,
    {
      kind: 'backend',
      statePath: BACKEND_STATE,
      addresses: [...ownedAddresses(plan.addresses, facts, state), ...retained],
      tunnels: keepTunnel ? [{ name: keepTunnel.name, local: keepTunnel.local, remote: 'any' }] : [],
      files: plan.files,
      originalSysctls: originals,
      modules: plan.modules,
      nft: nftWants,
      unit: plan.unit ? { name: BACKEND_UNIT, enabled: facts.systemd } : null,
    },
    { name: spec.name, facts, specText, generation },
  );
}
