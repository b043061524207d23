import { BackendHostSpec, BACKEND_TUNNEL, BACKEND_TUNNEL6, BACKEND_UNIT, MSS_TABLE, planBackendHost } from '../../model';
import { KERNEL_MODULES, type FactsRequest, type HostFacts } from '../facts/gather';
import { StateAddress, statePath } from '../state';
import {
  addressTasks,
  addressSetOf,
  ancestorDirs,
  fileTask,
  hasAddress,
  moduleTask,
  ownedAddresses,
  staleAddressTasks,
  staleFileTasks,
  sysctlTask,
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
export function backendFactsRequest(spec?: BackendHostSpec): FactsRequest {
  return {
    // the tunnels' modules matter only where a service is L3 (remove needs none)
    modules: spec?.services.some((s) => s.mode === 'l3') ? KERNEL_MODULES : [],
    statePath: BACKEND_STATE,
    files: ALL_BACKEND_FILES,
    dirs: [...new Set([...ALL_BACKEND_FILES, BACKEND_STATE].flatMap(ancestorDirs))],
    sysctls: [
      'net.ipv4.conf.all.arp_ignore',
      'net.ipv4.conf.all.arp_announce',
      'net.ipv4.conf.all.rp_filter',
      `net.ipv4.conf.${BACKEND_TUNNEL}.rp_filter`,
      `net.ipv6.conf.${BACKEND_TUNNEL6}.disable_ipv6`,
      `net.ipv6.conf.${BACKEND_TUNNEL6}.accept_ra`,
    ],
    nftTables: MSS_FAMILIES.map((family) => ({ family, name: MSS_TABLE })),
  };
}

/** The MSS clamp has a table per family: `ip` for IPIP, `ip6` for ip6tnl. */
const MSS_FAMILIES = ['ip', 'ip6'] as const;

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

/** `plan`: planBackendHost of this spec, made while the facts came. */
export function planBackendTasks(spec: BackendHostSpec, facts: HostFacts, specText: string, generation: string, plan = planBackendHost(spec)): HostPlanResult {
  const state = facts.state;
  const tasks: Task[] = [];
  const needed = ['ip', 'sysctl', 'flock', 'sha256sum', 'awk', 'sed', ...(plan.mssClamp ? ['nft'] : [])];
  const missing = facts.missingTools.filter((t) => needed.includes(t));
  if (missing.length)
    return {
      tasks: [failed('tools', `missing on the host: ${missing.join(', ')} (install iproute2, procps, util-linux, nftables, coreutils)`)],
      writtenFiles: [],
    };

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
  for (const tunnel of [plan.tunnel, plan.tunnel6]) if (tunnel) tasks.push(tunnelTask({ ...tunnel, remote: 'any' }, facts));
  // a device this run creates has its keys only from then on: their values now are the kernel's defaults, not set
  for (const s of plan.sysctls.filter((x) => x.device)) tasks.push(sysctlTask(s.key, s.value, facts, !facts.ip.links[s.device!]));
  tasks.push(...addressTasks(plan.addresses, facts));

  // Addresses of earlier generations retire first and go after the grace period.
  const wantedAddresses = addressSetOf(plan.addresses);
  const retained: StateAddress[] = [];
  const expired: StateAddress[] = [];
  for (const a of state?.addresses ?? []) {
    if (wantedAddresses.has(a) || !hasAddress(facts, a)) continue;
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

  const nftWants: NftWant[] = (plan.mssClamp?.tables ?? []).map((t) => ({ family: t.family, name: t.name, desired: t.ruleset, load: t.ruleset }));
  for (const want of nftWants) tasks.push(nftTableTask(want, facts, state, `MSS clamp for L3 ${want.family === 'ip6' ? 'IPv6 ' : ''}VIPs`));
  for (const family of MSS_FAMILIES) {
    const key = `${family} ${MSS_TABLE}`;
    if (nftWants.some((w) => w.family === family) || !facts.nft[key]?.table.exists || !state?.nft[key]) continue;
    tasks.push(
      nftChange(`nft table ${key}`, `no L3 ${family === 'ip6' ? 'IPv6 ' : ''}VIPs left: removed`, [
        { run: cmd('nft', 'delete', 'table', family, MSS_TABLE), undo: ':', allOrNothing: true },
      ]),
    );
  }
  // a tunnel whose last VIP left goes, unless a retiring VIP address is still on it (ipip0 carries the IPv4 VIPs)
  const wantedTunnels = [plan.tunnel, plan.tunnel6].filter((t) => t !== null);
  const keptTunnels = (state?.tunnels ?? []).filter((t) => !wantedTunnels.some((w) => w.name === t.name) && retained.some((a) => a.dev === t.name));
  for (const t of state?.tunnels ?? []) {
    if (wantedTunnels.some((w) => w.name === t.name) || keptTunnels.includes(t) || !facts.ip.links[t.name]) continue;
    tasks.push(
      changed(`tunnel ${t.name}`, `no L3 ${t.name === BACKEND_TUNNEL6 ? 'IPv6 ' : ''}VIPs left: removed`, [removeTunnelStep(t.name, t.local, t.remote)]),
    );
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

  return finishHostPlan(
    tasks,
    {
      kind: 'backend',
      statePath: BACKEND_STATE,
      addresses: [...ownedAddresses(plan.addresses, facts, state), ...retained],
      tunnels: [...wantedTunnels, ...keptTunnels].map((t) => ({ name: t.name, local: t.local, remote: 'any' })),
      files: plan.files,
      originalSysctls: originals,
      modules: plan.modules,
      nft: nftWants,
      unit: plan.unit ? { name: BACKEND_UNIT, enabled: facts.systemd } : null,
    },
    { name: spec.name, facts, specText, generation },
  );
}
