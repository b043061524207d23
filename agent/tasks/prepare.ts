import { BackendHostPlan, HostAddress, HostFile, HostSpec, PreparedBalancerHost, planBackendHost, prepareBalancerHost, sha256Hex } from '../../model';
import { addressSetOf } from './common';

/**
 * The part of a host's plan that needs no facts. The runner makes it while the host runs the facts script, when the
 * agent would otherwise only wait for the host: on a balancer of 10,000 VIPs, building and rendering its table and
 * boot files, about 30 ms of a weight change's 300.
 */
export type PreparedPlan =
  { readonly kind: 'balancer'; readonly balancer: PreparedBalancerHost } | { readonly kind: 'backend'; readonly backend: BackendHostPlan };

export function prepareHostPlan(spec: HostSpec): PreparedPlan {
  if (spec.kind === 'balancer') {
    const balancer = prepareBalancerHost(spec);
    warm(balancer.otherFiles, balancer.addresses);
    return { kind: 'balancer', balancer };
  }
  const backend = planBackendHost(spec);
  warm(backend.files, backend.addresses);
  return { kind: 'backend', backend };
}

/** What the plan asks of these files and addresses later, kept by the memos that answer it (sha256Hex, addressSetOf). */
function warm(files: readonly HostFile[], addresses: readonly HostAddress[]): void {
  for (const file of files) sha256Hex(file.content);
  addressSetOf(addresses);
}
