import { planBackendHost, BACKEND_BOOT_SCRIPT, BACKEND_UNIT_FILE } from './backend-host';
import { planBalancerHost } from './balancer-host';
import { renderNftDeclarative } from './nft/render';
import type { BackendHostSpec, BalancerSpec } from './spec';

/**
 * The human-readable parts of each host's desired state, one multi-line string per concern. They go into the
 * Terraform resource's triggers, so that `terraform plan` in a pull request shows a line diff of exactly the
 * rules and files that change.
 */
export type ReviewText = Record<string, string>;

export function renderBalancerReview(spec: BalancerSpec): ReviewText {
  const plan = planBalancerHost(spec);
  return {
    ruleset: renderNftDeclarative(plan.table),
    addresses: plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`).join('\n') + '\n',
    tunnels: plan.tunnels.length ? plan.tunnels.map((t) => `${t.name}: ipip local ${t.local} remote ${t.remote}`).join('\n') + '\n' : '(none)\n',
  };
}

export function renderBackendHostReview(spec: BackendHostSpec): ReviewText {
  const plan = planBackendHost(spec);
  const fileText = (path: string) => plan.files.find((f) => f.path === path)?.content;
  const sysctls = plan.sysctls.map((s) => `${s.key} = ${s.value}`).join('\n') + '\n';
  return {
    sysctl_file: plan.files[0]?.content ?? `(persist = false: runtime only)\n${sysctls}`,
    addresses: [
      ...(plan.tunnel ? [`${plan.tunnel.name}: ipip local ${plan.tunnel.local} remote any`] : []),
      ...plan.addresses.map((a) => `${a.ip}/${a.prefix} dev ${a.dev}`),
    ].join('\n') + '\n',
    mss_clamp: plan.mssClamp?.ruleset ?? '(none: no L3 VIPs)\n',
    boot_unit: plan.unit
      ? `# ${BACKEND_UNIT_FILE}\n${fileText(BACKEND_UNIT_FILE)}\n# ${BACKEND_BOOT_SCRIPT}\n${fileText(BACKEND_BOOT_SCRIPT)}`
      : '(persist = false: nothing survives a reboot)\n',
  };
}

export { renderNftDeclarative };
