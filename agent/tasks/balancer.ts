import {
  BALANCER_TABLE,
  VIP_STATS_SETS,
  BALANCER_UNIT,
  BalancerSpec,
  planBalancerHost,
  renderNftDeclarative,
  renderNftReload,
  BALANCER_RULESET_FILE,
  BALANCER_BOOT_SCRIPT,
  BALANCER_UNIT_FILE,
  macProblem,
  RUNTIME_CONFIG_FILE,
  RUNTIME_STATE_FILE,
  balancerHeader,
  balancerNeedsRuntime,
  flowCopyConfig,
  buildBalancerTable,
  parseRuntimeState,
  runtimePolicy,
  statsTextfileSettings,
  familyOf,
  NftTable,
  NftTableFacts,
  PreparedBalancerHost,
} from '../../model';
import { KERNEL_MODULES, type FactsRequest, type HostFacts } from '../facts/gather';
import { canonicalIp } from '../facts/parsers';
import { statePath } from '../state';
import {
  addressTasks,
  ancestorDirs,
  fileTask,
  moduleTask,
  ownedAddresses,
  staleAddressTasks,
  staleAddresses,
  staleFileTasks,
  tunnelTask,
  unitTask,
} from './common';
import { HostPlanResult, finishHostPlan } from './host-plan';
import type { NftWant } from './nft';
import { planTableTask } from './nft-incremental';
import { parseNftDeclarative } from '../../model/nft/parse-declarative';
import type { HostState } from '../state';
import { Task, changed, failed, ok } from './task';
import { removeTunnelStep } from './steps';
import {
  KEEPALIVED_FACTS,
  KEEPALIVED_FILES,
  keepalivedConfigCheckTask,
  keepalivedFiles,
  keepalivedInstalledTask,
  keepalivedServiceTask,
  keepalivedStopTask,
} from './keepalived';
import { PeerKeys, flowCopyPeerTask, peerHostKeys } from './flow-copy';
import { RUNTIME_FACTS, RUNTIME_FILES, nodeTask, runtimeFiles, runtimeServiceTask, runtimeStopTask, staleTextfileTask, textfileFolderTask } from './runtime';

export const BALANCER_STATE = statePath('balancer');
const BALANCER_FILES = [BALANCER_RULESET_FILE, BALANCER_BOOT_SCRIPT, BALANCER_UNIT_FILE, ...KEEPALIVED_FILES];

/** L2 backends whose MAC the balancer resolves at apply time (no explicit mac in the spec). */
export function backendsToResolve(spec: BalancerSpec): { ip: string; path: string }[] {
  const seen = new Map<string, string>();
  for (const vip of spec.vips) {
    if (vip.mode !== 'l2') continue;
    for (const b of vip.backends) if (!b.mac && !seen.has(b.ip)) seen.set(b.ip, b.path);
  }
  return [...seen.entries()].map(([ip, path]) => ({ ip, path }));
}

export function balancerFactsRequest(spec: BalancerSpec): FactsRequest {
  const resolve = backendsToResolve(spec);
  const textfile = statsTextfileSettings(spec);
  return {
    statePath: BALANCER_STATE,
    // the runtime's state travels back (the health view an apply keeps); its bundle only as a hash
    files: [...BALANCER_FILES, ...RUNTIME_FILES.slice(1), RUNTIME_STATE_FILE],
    hashOnlyFiles: RUNTIME_FILES.slice(0, 1),
    runtime: { ...RUNTIME_FACTS, version: balancerNeedsRuntime(spec) },
    keepalived: { ...KEEPALIVED_FACTS, version: !!spec.pair },
    modules: spec.vips.some((v) => v.mode === 'l3') ? KERNEL_MODULES : [],
    // with the textfile's folder, which must exist (see textfileFolderTask)
    dirs: [...new Set([...BALANCER_FILES, ...RUNTIME_FILES, BALANCER_STATE, ...(textfile ? [textfile.path] : [])].flatMap(ancestorDirs))],
    sysctls: [],
    nftTables: [{ family: 'netdev', name: BALANCER_TABLE, generation: !balancerNeedsRuntime(spec), keptSets: VIP_STATS_SETS, takenOver: 'vip_' }],
    neighbours: resolve.length ? { dev: spec.interface, ips: resolve.map((r) => r.ip) } : undefined,
  };
}

/**
 * The table the last apply loaded, read back from the boot ruleset it wrote, which the facts bring anyway (the file
 * task compares it); planTableTask checks it against the ruleset hash the state records.
 */
function previousTable(state: HostState | null, facts: HostFacts): NftTable | string {
  if (state?.kind !== 'balancer') return "the state is not a balancer's";
  const file = facts.files[BALANCER_RULESET_FILE];
  if (!file) return `${BALANCER_RULESET_FILE} is missing`;
  const table = parseNftDeclarative(file.content);
  return typeof table === 'string' ? `${BALANCER_RULESET_FILE}: ${table}` : table;
}

/** What the agent knows where it runs, not on the host: the pair's peer key, read from the pin or known_hosts file. */
export interface LocalFacts {
  readonly peerKeys?: PeerKeys;
}

/** `prepared`: what prepareBalancerHost made of this spec while the facts came, if it did. */
export function planBalancerTasks(
  spec: BalancerSpec,
  hostFacts: HostFacts,
  specText: string,
  generation: string,
  local: LocalFacts = {},
  prepared?: PreparedBalancerHost,
): HostPlanResult {
  let facts = hostFacts;
  const state = facts.state;
  const none = { writtenFiles: [] };
  const resolve = backendsToResolve(spec);
  const needed = ['ip', 'nft', 'flock', 'sha256sum', 'awk', 'sed', ...(resolve.length ? ['ping'] : [])];
  const missing = facts.missingTools.filter((t) => needed.includes(t));
  if (missing.length)
    return { tasks: [failed('tools', `missing on the host: ${missing.join(', ')} (install iproute2, nftables, util-linux, coreutils)`)], ...none };
  const link = facts.ip.links[spec.interface];
  if (!link)
    return { tasks: [failed(`interface ${spec.interface}`, `does not exist on ${spec.name}; interfaces: ${Object.keys(facts.ip.links).join(', ')}`)], ...none };

  const decisions: Task[] = [];
  const macs: Record<string, string> = {};
  for (const { ip, path } of resolve) {
    const mac = facts.neighbours[canonicalIp(ip)];
    const problem = mac === undefined ? null : macProblem(mac);
    if (mac && problem) {
      decisions.push(
        failed(
          `backend MAC ${ip}`,
          `${path}: the neighbour table of ${spec.interface} on ${spec.name} maps ${ip} to ${JSON.stringify(mac)}, which ${problem}; L2 DSR forwards only to a backend's unicast MAC: correct the entry (ip neigh del ${ip} dev ${spec.interface}) or set mac on the backend`,
        ),
      );
    } else if (mac) {
      macs[ip] = mac;
      decisions.push(ok(`backend MAC ${ip}`, `${mac} (resolved on ${spec.interface})`));
    } else {
      decisions.push(
        failed(
          `backend MAC ${ip}`,
          `${path}: ${ip} does not answer ${ip.includes(':') ? 'Neighbour Solicitations' : 'ARP'} on ${spec.interface} of ${spec.name}; check that it is up and on the balancer's segment, or set mac on the backend`,
        ),
      );
    }
  }
  // one owner per MAC and family: a dual-stack host's IPv4 and IPv6 addresses share its MAC, and each family's
  // flows and counters are told apart by the packet's protocol
  // family → MAC → the backend address that has it (no key string per backend: ten thousand VIPs have 40,000)
  const owner = new Map<4 | 6, Map<string, string>>();
  for (const vip of spec.vips) {
    if (vip.mode !== 'l2') continue;
    for (const b of vip.backends) {
      const mac = b.mac ?? macs[b.ip];
      if (!mac) continue;
      const family = familyOf(b.ip);
      let owners = owner.get(family);
      if (!owners) owner.set(family, (owners = new Map()));
      const other = owners.get(mac);
      if (other !== undefined && other !== b.ip) {
        decisions.push(
          failed(
            `backend MAC ${b.ip}`,
            `${b.path}: ${b.ip} has the same MAC ${mac} as ${other}; L2 DSR forwards by MAC, so two backend addresses of one family on one host cannot be told apart`,
          ),
        );
      }
      owners.set(mac, b.ip);
    }
  }
  const interfaceMac = spec.mac ?? link.mac;
  const l2 = spec.vips.some((v) => v.mode === 'l2');
  const interfaceProblem = interfaceMac === undefined ? null : macProblem(interfaceMac);
  if (!interfaceMac && l2) decisions.push(failed(`interface ${spec.interface}`, 'has no MAC address; L2 DSR needs an Ethernet interface (or set mac)'));
  else if (interfaceProblem && l2)
    decisions.push(
      failed(
        `interface ${spec.interface}`,
        `has the MAC ${JSON.stringify(interfaceMac)}, which ${interfaceProblem}; L2 DSR needs an Ethernet interface (or set mac)`,
      ),
    );
  if (decisions.some((t) => t.status === 'failed')) return { tasks: decisions, ...none };

  const balancerFacts = { interfaceMac, backendMacs: macs };
  const plan = planBalancerHost(spec, balancerFacts, prepared);
  const needsRuntime = balancerNeedsRuntime(spec);
  const textfile = statsTextfileSettings(spec);
  const tasks: Task[] = [...decisions];
  if (spec.pair) {
    const installed = keepalivedInstalledTask(facts, spec.name);
    tasks.push(installed);
    if (installed.status === 'failed') return { tasks, ...none };
  } else {
    // a member that leaves its pair: keepalived goes first, with the VIPs it held, which the agent then adds itself
    const stop = keepalivedStopTask(facts, state, 'no longer a member of a balancer pair: stopped (the agent holds the VIPs again)');
    if (stop) {
      tasks.push(stop);
      const held = new Set(plan.addresses.map((a) => `${a.ip} ${a.dev}`));
      facts = { ...facts, ip: { ...facts.ip, addresses: facts.ip.addresses.filter((a) => !(a.prefix === 32 && held.has(`${a.ip} ${a.dev}`))) } };
    }
  }
  const peerKeys: PeerKeys | undefined = spec.pair ? (local.peerKeys ?? peerHostKeys(spec.pair.peerSsh)) : undefined;
  if (needsRuntime) {
    const prerequisites = [
      nodeTask(facts, spec.name),
      ...(textfile ? [textfileFolderTask(facts, spec.name, textfile)] : []),
      ...(peerKeys ? [flowCopyPeerTask(spec, peerKeys)] : []),
    ];
    tasks.push(...prerequisites);
    if (prerequisites.some((t) => t.status === 'failed')) return { tasks, ...none };
  } else {
    // before its files go, and before the reload takes its maps away
    const stop = runtimeStopTask(facts, state, 'no longer needed (no pool with health checks or least connections, no statistics textfile): stopped');
    if (stop) tasks.push(stop);
  }
  for (const module of plan.modules) tasks.push(moduleTask(module, facts));
  for (const t of plan.tunnels) tasks.push(tunnelTask(t, facts));
  tasks.push(...addressTasks(plan.addresses, facts));
  const files = [
    ...plan.files,
    ...(needsRuntime ? runtimeFiles(spec, balancerFacts, facts.systemd, peerKeys && 'keys' in peerKeys ? flowCopyConfig(spec, peerKeys.keys) : undefined) : []),
    ...(spec.pair ? keepalivedFiles(spec, facts.systemd) : []),
  ];
  const fileTasks = files.map((f) => fileTask(f, facts));
  const changedPath = (paths: readonly string[]) => fileTasks.some((t, i) => t.status === 'changed' && paths.includes(files[i].path));
  const keepalivedChanged = !!spec.pair && changedPath(KEEPALIVED_FILES);
  tasks.push(
    ...fileTasks,
    ...staleFileTasks(
      state,
      files.map((f) => f.path),
      facts,
    ),
  );
  if (keepalivedChanged) tasks.push(keepalivedConfigCheckTask());

  // The table loads with the runtime's view (a backend it found down stays out of new flows); whether it is in sync
  // is judged on the configuration alone, since drift checks leave the runtime's maps out.
  const loaded = needsRuntime
    ? buildBalancerTable(spec, balancerFacts, balancerHeader(spec), runtimePolicy(parseRuntimeState(facts.files[RUNTIME_STATE_FILE]?.content)))
    : plan.table;
  const desired = renderNftDeclarative(plan.table);
  // only a table no runtime rewrites can be updated by elements, and its generation tells the next run it is unchanged
  const render = (tableFacts: NftTableFacts | null): NftWant => ({
    family: 'netdev',
    name: BALANCER_TABLE,
    desired,
    load: tableFacts ? renderNftReload(loaded, tableFacts) : '',
    recordGeneration: !needsRuntime,
  });
  const { task: nftTask, want, relist } = planTableTask(facts, state, `${spec.vips.length} VIPs`, plan.table, render, () => previousTable(state, facts));
  tasks.push(nftTask);
  if (needsRuntime) {
    tasks.push(
      runtimeServiceTask(facts, {
        program: changedPath(RUNTIME_FILES.filter((p) => p !== RUNTIME_CONFIG_FILE)),
        config: changedPath([RUNTIME_CONFIG_FILE]) || nftTask.status === 'changed',
      }),
    );
    const stale = staleTextfileTask(state, textfile);
    if (stale) tasks.push(stale);
  }

  // with the table loaded, so that its track script passes
  if (spec.pair) tasks.push(keepalivedServiceTask(facts, keepalivedChanged));

  // Only now that no rule refers to them: addresses and tunnels of earlier generations (not the VIPs keepalived holds
  // now that the balancer has joined a pair).
  const vrrpHeld = new Set(spec.pair ? spec.vips.map((v) => `${v.ip} ${spec.interface}`) : []);
  tasks.push(
    ...staleAddressTasks(
      staleAddresses(state, plan.addresses).filter((a) => !(a.prefix === 32 && vrrpHeld.has(`${a.ip} ${a.dev}`))),
      facts,
    ),
  );
  const wantedTunnels = new Set(plan.tunnels.map((t) => t.name));
  for (const t of state?.tunnels ?? []) {
    if (!wantedTunnels.has(t.name) && facts.ip.links[t.name])
      tasks.push(changed(`tunnel ${t.name}`, 'no longer needed: removed', [removeTunnelStep(t.name, t.local, t.remote)]));
  }
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
      kind: 'balancer',
      statePath: BALANCER_STATE,
      addresses: ownedAddresses(plan.addresses, facts, state),
      tunnels: plan.tunnels.map((t) => ({ ...t })),
      files,
      originalSysctls: state?.originalSysctls ?? {},
      modules: plan.modules,
      nft: [want],
      unit: { name: BALANCER_UNIT, enabled: facts.systemd },
      ...(needsRuntime
        ? { runtime: { service: facts.systemd ? ('systemd' as const) : ('supervisor' as const), ...(textfile && { statsTextfile: textfile.path }) } }
        : {}),
      ...(spec.pair ? { keepalived: { service: facts.systemd ? ('systemd' as const) : ('direct' as const) } } : {}),
    },
    { name: spec.name, facts, specText, generation },
    relist,
  );
}
