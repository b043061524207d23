import { z } from 'zod';
import { stableJson } from './digest';
import { FlowCopyConfig, FlowCopyConfigSchema } from './flow-copy';
import { fastParse } from './fast-parse';
import { isManagedVip } from './nft/pools';
import type { BalancerFacts } from './nft/balancer';
import type { BalancerSpec } from './spec';
import { StrictSpecSchemas } from './spec';
import { statsTextfileSettings } from './stats-textfile';

/**
 * The balancer runtime's files and configuration. The runtime runs only on balancers that need it: a slot pool it
 * manages (least connections, health checks), or a statistics textfile to write. The agent renders the configuration from the spec and what it
 * resolved on the host (MACs), installs it with the runtime's bundle, and starts, reloads or stops the runtime.
 */
export const RUNTIME_CONFIG_FILE = '/etc/tula-dsr/runtime.json';
export const RUNTIME_DIR = '/usr/local/lib/tula-dsr';
export const RUNTIME_BUNDLE_FILE = `${RUNTIME_DIR}/tula-dsr-runtime.js`;
/** Where systemd does not run: the agent's supervisor keeps the runtime running (see renderRuntimeSupervisor). */
export const RUNTIME_SUPERVISOR_FILE = `${RUNTIME_DIR}/runtime-supervisor.sh`;
export const RUNTIME_PID_FILE = '/run/tula-dsr-runtime.pid';
export const RUNTIME_LOG_FILE = '/var/log/tula-dsr-runtime.log';
export const RUNTIME_UNIT = 'tula-dsr-runtime.service';
export const RUNTIME_UNIT_FILE = `/etc/systemd/system/${RUNTIME_UNIT}`;
/** The oldest Node the runtime runs on (socket.resetAndDestroy, Debian 12 ships 18.19). */
export const RUNTIME_NODE_MAJOR = 18;

export const RuntimeConfigSchema = z.strictObject({
  version: z.literal(1),
  balancer: StrictSpecSchemas.BalancerSpecSchema,
  /** What the agent resolved on the balancer: its interface MAC and the L2 backends' MACs. */
  facts: z.strictObject({ interfaceMac: z.string().optional(), backendMacs: z.record(z.string(), z.string()) }),
  leastConnections: z.strictObject({ intervalMs: z.number().int().min(50).max(60_000) }),
  /** A pair member's flow copy to and from the other member. */
  flowCopy: FlowCopyConfigSchema.optional(),
});

export type RuntimeConfig = z.infer<typeof RuntimeConfigSchema>;

/** Least connections re-weights every this many milliseconds: about ten times per typical connection. */
export const LEAST_CONNECTIONS_INTERVAL_MS = 200;

export function balancerNeedsRuntime(spec: BalancerSpec): boolean {
  // a pair member's runtime copies its flows to the other member
  // VIP by VIP, without grouping them into pools: a quarter of the grouping's cost on ten thousand VIPs
  return spec.pair !== undefined || statsTextfileSettings(spec) !== null || spec.vips.some(isManagedVip);
}

export function renderRuntimeConfig(spec: BalancerSpec, facts: BalancerFacts, flowCopy?: FlowCopyConfig): string {
  const config: RuntimeConfig = {
    version: 1,
    balancer: spec,
    facts: { interfaceMac: facts.interfaceMac, backendMacs: { ...(facts.backendMacs ?? {}) } },
    leastConnections: { intervalMs: LEAST_CONNECTIONS_INTERVAL_MS },
    ...(flowCopy && { flowCopy }),
  };
  return stableJson(config) + '\n';
}

export function parseRuntimeConfig(text: string): RuntimeConfig {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (error) {
    throw new Error(`the runtime configuration is not JSON: ${(error as Error).message}`, { cause: error });
  }
  // the balancer's whole spec: the fast path, and zod only to word what is wrong
  const fast = fastParse(RuntimeConfigSchema, data);
  if (fast) return fast.value;
  const parsed = RuntimeConfigSchema.safeParse(data);
  if (!parsed.success)
    throw new Error(`the runtime configuration does not fit its schema: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  return parsed.data;
}

/** The systemd unit: restarted on failure; `systemctl reload` sends SIGHUP (new configuration, reloaded table). */
export function renderRuntimeUnit(balancer: string): string {
  return [
    '[Unit]',
    `Description=tula-dsr balancer runtime for ${balancer}: health checks, least connections`,
    'After=network-online.target tula-dsr-balancer.service',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=/usr/bin/env node ${RUNTIME_BUNDLE_FILE} ${RUNTIME_CONFIG_FILE}`,
    'ExecReload=/bin/kill -HUP $MAINPID',
    'Restart=on-failure',
    'RestartSec=1',
    'Environment=PATH=/usr/sbin:/usr/bin:/sbin:/bin',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/**
 * Where systemd does not run (containers, the namespace lab), the agent starts this supervisor in its own session:
 * it restarts the runtime a second after it exits, passes SIGUSR1 (or SIGHUP) on to it as SIGHUP, and stops it on
 * SIGTERM. The agent upgrades the runtime by stopping the child (the supervisor starts the new bundle), and stops
 * the whole by SIGTERM to the supervisor, whose PID it keeps in RUNTIME_PID_FILE.
 */
export function renderRuntimeSupervisor(): string {
  return [
    '#!/bin/sh',
    '# Managed by tula-dsr: keeps the balancer runtime running where systemd does not.',
    'child=',
    'stopping=',
    // SIGUSR1 from the agent: the shell that starts the supervisor ignores SIGHUP, and a shell cannot trap a signal
    // that was ignored when it started (POSIX); the runtime itself takes SIGHUP
    'trap \'[ -n "$child" ] && kill -HUP "$child" 2>/dev/null\' HUP USR1',
    'trap \'stopping=1; [ -n "$child" ] && kill -TERM "$child" 2>/dev/null\' TERM INT',
    'while [ -z "$stopping" ]; do',
    `  node ${RUNTIME_BUNDLE_FILE} ${RUNTIME_CONFIG_FILE} >>${RUNTIME_LOG_FILE} 2>&1 &`,
    '  child=$!',
    '  # a trapped signal interrupts wait: wait again until the runtime has really ended',
    '  while kill -0 "$child" 2>/dev/null; do wait "$child"; done',
    '  child=',
    '  [ -n "$stopping" ] || sleep 1',
    'done',
    '',
  ].join('\n');
}
