import type { ProbingCheckSpec } from './health-check';
import type { BackendSpec, BalancerSpec, Mode, Protocol, VipSpec } from './spec';

/** A check as one backend of one VIP gets it: the backend's own check or the VIP's, with the port filled in. */
export type ResolvedHealthCheck = ProbingCheckSpec & { readonly port: number };

/**
 * One probe the runtime sends every `check.intervalSec`. Checks are deduplicated by (backend address, check), so
 * ten thousand VIPs on four backends with one check are four targets; the result stands for every VIP in `vips`.
 */
export interface ProbeTarget {
  /** `<backend address> <checkKey>`: the target's identity, stable across configurations. */
  readonly key: string;
  readonly backend: { readonly ip: string; readonly mac?: string; readonly mode: Mode };
  readonly check: ResolvedHealthCheck;
  /**
   * The VIP the probe is addressed to, sent through this backend (a DSR service often listens on the VIP only): the
   * first VIP by name that uses this backend with this check.
   */
  readonly via: { readonly name: string; readonly ip: string; readonly port: number };
  /** The VIPs (names, sorted) whose backend this target decides. */
  readonly vips: readonly string[];
}

/** The check that decides whether `backend` of `vip` takes new flows, or null when it is not checked. */
export function effectiveCheck(vip: Pick<VipSpec, 'port' | 'healthCheck'>, backend: Pick<BackendSpec, 'path' | 'healthCheck'>): ResolvedHealthCheck | null {
  const check = backend.healthCheck ?? vip.healthCheck;
  if (check === undefined || check.kind === 'none') return null;
  const port = check.port ?? (vip.port === '*' ? undefined : vip.port);
  // validation (checkBalancerSpec) refuses this; reaching it is a programming error, not a user's
  if (port === undefined) throw new Error(`${backend.path}: health check of an all-ports VIP without a port`);
  return { ...check, port };
}

export const probeProtocol = (check: ResolvedHealthCheck): Protocol => (check.kind === 'udp' ? 'udp' : 'tcp');

/** What is sent and what passes, without the timings: `http/80 path=/healthz status=200-399`. */
export function probeKey(check: ResolvedHealthCheck): string {
  const parts = [`${check.kind}/${check.port}`];
  if (check.kind === 'http') {
    parts.push(`path=${check.path}`, `status=${check.expectStatus}`);
    if (check.host !== undefined) parts.push(`host=${check.host}`);
  } else if (check.kind === 'udp') {
    parts.push(`payload=${check.payloadHex}`);
    if (check.expectHex !== undefined) parts.push(`expect=${check.expectHex}`);
  }
  return parts.join(' ');
}

/**
 * A check's identity, readable in logs and the runtime's state file: `tcp/80 interval=2 timeout=1 fall=3 rise=2`.
 * No field holds a space (validation), and the fields come in a fixed order, so equal keys mean equal checks.
 */
export function checkKey(check: ResolvedHealthCheck): string {
  return `${probeKey(check)} interval=${check.intervalSec} timeout=${check.timeoutSec} fall=${check.fall} rise=${check.rise}`;
}

export const targetKey = (backendIp: string, check: ResolvedHealthCheck): string => `${backendIp} ${checkKey(check)}`;

/**
 * The check and its key for each backend of a VIP (null where a backend is not checked). The VIP's own check is
 * resolved once for all its backends: ten thousand VIPs of four backends are ten thousand resolutions, not forty.
 */
export function vipBackendChecks(vip: VipSpec): ({ check: ResolvedHealthCheck; key: string } | null)[] {
  let shared: { check: ResolvedHealthCheck; key: string } | null | undefined;
  const resolve = (backend: BackendSpec) => {
    const check = effectiveCheck(vip, backend);
    return check ? { check, key: checkKey(check) } : null;
  };
  return vip.backends.map((backend) => {
    if (backend.healthCheck !== undefined) return resolve(backend);
    if (shared === undefined) shared = resolve(backend);
    return shared;
  });
}

/**
 * For each backend of a VIP, the key of the probe target that decides it (null: not checked). All VIPs of a slot pool
 * give the same keys (checks are part of the pool's key), so the runtime maps a pool's backends to targets with it.
 */
export function backendTargetKeys(vip: VipSpec): (string | null)[] {
  return vipBackendChecks(vip).map((resolved, i) => (resolved ? `${vip.backends[i].ip} ${resolved.key}` : null));
}

/**
 * A target key without its timings (`10.0.1.11 tcp/80`): what is probed and where. A change of interval, timeout,
 * fall or rise alone changes the key but not this, so the runtime keeps the target's health across it.
 */
export const keyProbeIdentity = (key: string): string => key.replace(/ interval=\S+ timeout=\S+ fall=\d+ rise=\d+$/, '');

export const targetProbeIdentity = (target: Pick<ProbeTarget, 'key'>): string => keyProbeIdentity(target.key);

/** Every probe target of a balancer, one per (backend address, check), in the order of their first VIP by name. */
export function probeTargets(spec: Pick<BalancerSpec, 'vips'>): ProbeTarget[] {
  const targets = new Map<string, ProbeTarget & { vips: string[] }>();
  const vips = [...spec.vips].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  for (const vip of vips) {
    const checks = vipBackendChecks(vip);
    vip.backends.forEach((backend, index) => {
      const resolved = checks[index];
      if (!resolved) return;
      const { check } = resolved;
      const key = `${backend.ip} ${resolved.key}`;
      const known = targets.get(key);
      if (known) {
        known.vips.push(vip.name);
        return;
      }
      targets.set(key, {
        key,
        backend: { ip: backend.ip, ...(backend.mac !== undefined && { mac: backend.mac }), mode: vip.mode },
        check,
        via: { name: vip.name, ip: vip.ip, port: check.port },
        vips: [vip.name],
      });
    });
  }
  return [...targets.values()];
}
