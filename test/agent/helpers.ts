/**
 * Shared support for the agent's lab tests: spec builders for lab hosts, the real CLI as a child process,
 * and host snapshots that prove what did (or did not) change on a host.
 */
import { sh } from '../support/lab-run';
export { sh };
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { FACTS_TEMP_PREFIX } from '../../agent/facts/gather';
import { execFile } from '../../lab/exec';
import type { Lab, LabHost } from '../../lab/topology';
import { HostRunResult, RunMode, RunOptions, runHost } from '../../agent/runner';

export const REPO = resolve(__dirname, '../..');
export const CLI = join(REPO, 'dist/agent/cli.js');

/** The CLI tests run dist/: fail early, with the fix, when it is missing or older than the sources. */
export function assertDistFresh(): void {
  if (!existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npx tsc -p .\` (npm test does) before these tests`);
  const built = statSync(CLI).mtimeMs;
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = join(dir, e.name);
      return Math.max(m, e.isDirectory() ? newest(p) : p.endsWith('.ts') ? statSync(p).mtimeMs : 0);
    }, 0);
  const stale = ['agent', 'model'].filter((d) => newest(join(REPO, d)) > built);
  if (stale.length) throw new Error(`dist/ is older than ${stale.join(', ')}/: run \`npx tsc -p .\` before these tests`);
}

export interface ServiceInput {
  ip: string;
  port?: number | '*';
  protocol?: 'tcp' | 'udp';
  mode?: 'l2' | 'l3';
  path?: string;
  mssClamp?: number;
}

/** A backend host spec for a lab host, as the constructs would synthesize it (JSON-ready). */
export function backendSpec(lab: Lab, host: LabHost, services: readonly ServiceInput[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  const { ssh, ...rest } = extra as { ssh?: Record<string, unknown> };
  return {
    kind: 'backend',
    path: `lab/${host.name}`,
    name: host.name,
    ssh: { host: host.ip, port: 22, user: 'root', privateKeyPath: lab.clientKeyPath, hostKey: host.hostKeyFingerprint, ...ssh },
    services: services.map((s, i) => ({
      path: s.path ?? `lab/vip${i}/${host.name}`,
      ip: s.ip,
      port: s.port ?? 80,
      protocol: s.protocol ?? 'tcp',
      mode: s.mode ?? 'l2',
      ...(s.mssClamp ? { mssClamp: s.mssClamp } : {}),
    })),
    ...rest,
  };
}

export interface VipInput {
  name: string;
  ip: string;
  port?: number | '*';
  backends: readonly { name: string; ip: string; mac?: string; weight?: number }[];
}

/** A balancer spec for a lab host with L2 VIPs on eth0, its subnet set to the lab's. */
export function balancerSpec(lab: Lab, host: LabHost, vips: readonly VipInput[], extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    kind: 'balancer',
    path: `lab/${host.name}`,
    name: host.name,
    ssh: { host: host.ip, port: 22, user: 'root', privateKeyPath: lab.clientKeyPath, hostKey: host.hostKeyFingerprint },
    interface: 'eth0',
    address: host.ip,
    subnet: lab.subnet,
    vips: vips.map((v) => ({
      path: `lab/${v.name}`,
      name: v.name,
      ip: v.ip,
      port: v.port ?? 80,
      backends: v.backends.map((b) => ({
        path: `lab/${v.name}/${b.name}`,
        name: b.name,
        ip: b.ip,
        ...(b.mac ? { mac: b.mac } : {}),
        ...(b.weight !== undefined ? { weight: b.weight } : {}),
      })),
    })),
    ...extra,
  };
}

/** An address in the lab's /24 that no host uses (the lab numbers hosts from .1; the controller is .254). */
export function unusedIp(lab: Lab, octet = 200): string {
  return lab.subnet.replace(/\.0\/24$/, `.${octet}`);
}

let specCounter = 0;
/** Writes a spec (object or raw text) into the lab's private dir and returns its path. */
export function writeSpec(lab: Lab, spec: unknown, name = `spec-${++specCounter}.json`): string {
  const path = join(lab.dir, name);
  writeFileSync(path, typeof spec === 'string' ? spec : JSON.stringify(spec));
  return path;
}

export interface CliResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/** Runs the real CLI (`node dist/agent/cli.js …`) as a child process. */
export async function runCli(args: readonly string[], env: Record<string, string> = {}): Promise<CliResult> {
  const started = Date.now();
  const r = await execFile(['node', CLI, ...args], { env, timeoutMs: 60_000 });
  return { ...r, ms: Date.now() - started };
}

/** In-process run of one host (faster than the CLI; same code path below main()). */
export function run(spec: unknown, mode: RunMode, options: RunOptions = {}): Promise<HostRunResult> {
  return runHost(typeof spec === 'string' ? spec : JSON.stringify(spec), mode, options);
}

export const TASK_LINE = (r: HostRunResult) => r.tasks.map((t) => `${t.status}: ${t.name}`);

export interface HostSnapshot {
  readonly ruleset: string;
  readonly addr: string;
  readonly sysctls: string;
  /** `find` listing of /etc and /var/lib: type, mode, owner, size, mtime and ctime of files; symlink targets. */
  readonly files: string;
  /** sha256 of every regular file under /etc and /var/lib. */
  readonly hashes: string;
}

/**
 * Everything a tula-dsr run may touch on a host, as text. `strict` keeps directory times (a no-op run must not
 * even create and delete a file); without it directory times are dropped, because a remove legitimately
 * deletes the directories and files it created, which bumps the parents' mtime.
 */
export async function snapshot(host: LabHost, opts: { strict?: boolean; hashes?: boolean } = {}): Promise<HostSnapshot> {
  const dirFormat = opts.strict ? 'd %m %u:%g %T@ %C@ %p\\n' : 'd %m %u:%g %p\\n';
  const marker = '@@snapshot';
  const out = await sh(
    host,
    [
      'export LC_ALL=C',
      `echo '${marker} ruleset'`,
      'nft list ruleset',
      `echo '${marker} addr'`,
      'ip -j addr',
      `echo '${marker} sysctls'`,
      "sysctl -a 2>/dev/null | grep -E '^net\\.ipv4\\.(conf\\.|ip_forward )' | sort",
      `echo '${marker} files'`,
      `find /etc /var/lib -xdev \\( -type d -printf '${dirFormat}' \\) -o \\( -type f -printf 'f %m %u:%g %s %T@ %C@ %p\\n' \\) -o -printf '%y %m %l %p\\n' | sort`,
      `echo '${marker} hashes'`,
      opts.hashes === false ? ':' : 'find /etc /var/lib -xdev -type f -exec sha256sum {} + | sort -k2',
    ].join('\n'),
  );
  const parts: Record<string, string> = {};
  let current = '';
  for (const line of out.split('\n')) {
    if (line.startsWith(`${marker} `)) current = line.slice(marker.length + 1);
    else if (current) parts[current] = (parts[current] ?? '') + line + '\n';
  }
  // IPv6 duplicate address detection ends by itself a second after a link comes up: not a change anyone made
  const addr = (parts.addr ?? '').replace(/"(tentative|optimistic)":true,/g, '');
  // entries of the dynamic flow maps count down by themselves
  const ruleset = (parts.ruleset ?? '').replace(/ expires \S+? :/g, ' :');
  return { ruleset, addr, sysctls: parts.sysctls ?? '', files: parts.files ?? '', hashes: parts.hashes ?? '' };
}

/** `key = value` of one sysctl on the host. */
export async function sysctl(host: LabHost, key: string): Promise<string> {
  return (await sh(host, `sysctl -n ${key}`)).trim();
}

/** The host's IPv4 addresses on one device, as `ip/prefix`. */
export async function addresses(host: LabHost, dev: string): Promise<string[]> {
  const data = JSON.parse(await sh(host, `ip -j -4 addr show dev ${dev}`)) as { addr_info: { local: string; prefixlen: number }[] }[];
  return data.flatMap((i) => i.addr_info.map((a) => `${a.local}/${a.prefixlen}`));
}

/** Files tula-dsr must never leave behind after a run ends (temp files of atomic writes, the facts' nft listing). */
export async function leftovers(host: LabHost): Promise<string[]> {
  const out = await sh(
    host,
    `find /etc /var/lib /run -xdev \\( -name '*.tula-tmp' -o -name '*.tula-bak' -o -name '${basename(FACTS_TEMP_PREFIX)}*' \\) -print 2>/dev/null | sort`,
  );
  return out.split('\n').filter(Boolean);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Lines of text without a trailing empty one. */
export const lines = (text: string) => text.split('\n').filter((l, i, all) => l !== '' || i < all.length - 1);

/** No stack trace, no internal error: user-facing failure output. */
export function expectNoStackTrace(text: string): void {
  expect(text).not.toMatch(/^\s+at .+\(.+:\d+:\d+\)$/m);
  expect(text).not.toMatch(/TypeError|ReferenceError|SyntaxError|Unhandled/);
}

/**
 * Runs `body` with `tool` (an absolute path, e.g. /usr/sbin/nft) replaced inside the host by a sh wrapper: `wrapper`
 * is shell run first with the tool's arguments ("$@"), `$REAL` names the real tool, and the real tool runs after the
 * wrapper unless the wrapper exits. A bind mount in the host's own mount namespace: no other host, and not the machine, sees it.
 */
export async function withWrappedTool<T>(host: LabHost, tool: string, wrapper: string, body: () => Promise<T>): Promise<T> {
  const name = tool.split('/').pop()!;
  const real = `/tmp/${name}.real`;
  await sh(
    host,
    [
      `cp ${tool} ${real}`,
      `cat > /tmp/${name}.wrapper <<'EOF'`,
      '#!/bin/sh',
      `REAL=${real}`,
      wrapper,
      'exec "$REAL" "$@"',
      'EOF',
      `chmod 755 /tmp/${name}.wrapper`,
      `mount --bind /tmp/${name}.wrapper ${tool}`,
    ].join('\n'),
  );
  try {
    return await body();
  } finally {
    await sh(host, `umount ${tool}`);
  }
}
