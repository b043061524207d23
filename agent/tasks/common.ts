import { HostFile, HostAddress, IpAddressLine, TUNNEL_MODULES, addressBatchLine, addressFlags, isIpv6, sha256Hex } from '../../model';
import { renderDiff } from '../../model/text-diff';
import { renderCommand } from '../../model/shell';
import type { HostFacts } from '../facts/gather';
import { canonicalIp } from '../facts/parsers';
import type { HostState, StateAddress } from '../state';
import { Step, Task, changed, failed, ok } from './task';
import {
  addAddressStep,
  addTunnelStep,
  cmd,
  deprecateAddressStep,
  removeAddressStep,
  removeFileStep,
  removeTunnelStep,
  sysctlStep,
  writeFileStep,
  knownContent,
} from './steps';

/** Files: compare hashes; show a line diff; write atomically. */
export function fileTask(file: HostFile, facts: HostFacts): Task {
  const current = facts.files[file.path];
  const name = `file ${file.path}`;
  if (current?.sha256 === sha256Hex(file.content)) return ok(name, 'up to date');
  return changed(
    name,
    current ? 'content differs' : 'missing',
    [writeFileStep(file.path, file.content, file.mode, !!current, current && knownContent(current))],
    file.opaque ? `sha256 ${current?.sha256 ?? '(none)'} -> ${sha256Hex(file.content)}` : renderDiff(current?.content ?? '', file.content, file.path),
  );
}

export function staleFileTasks(state: HostState | null, wanted: readonly string[], facts: HostFacts): Task[] {
  return (state?.files ?? [])
    .filter((path) => !wanted.includes(path) && facts.files[path])
    .map((path) => changed(`file ${path}`, 'no longer needed: removed', [removeFileStep(path)], renderDiff(facts.files[path].content, '', path)));
}

/** Runtime sysctl: the value now, and the step that sets it (undo restores the value seen in facts). */
export function sysctlTask(key: string, value: string, facts: HostFacts, knownMissing = false): Task {
  const current = knownMissing ? null : (facts.sysctls[key] ?? null);
  const name = `sysctl ${key}=${value}`;
  if (current === value) return ok(name, 'already set');
  return changed(name, current === null ? 'set (key appears with its device)' : `was ${current}`, [sysctlStep(key, value, current)]);
}

const addressKey = (a: { ip: string; prefix: number; dev: string }) => `${canonicalIp(a.ip)}/${a.prefix} dev ${a.dev}`;

type AddressLike = { readonly ip: string; readonly prefix: number; readonly dev: string };

/**
 * Addresses by device, prefix and canonical text. A balancer owns one address per VIP, and each run asks of every
 * one whether the host has it, whether the state recorded it and whether the spec still wants it: lookups here build
 * no key string (10,000 VIPs made 90,000 of them a run, and the garbage with them).
 */
export class AddressSet {
  private readonly byDev = new Map<string, Map<number, Set<string>>>();

  constructor(list: Iterable<AddressLike> = []) {
    for (const a of list) this.add(a);
  }

  add(a: AddressLike): void {
    let prefixes = this.byDev.get(a.dev);
    if (!prefixes) this.byDev.set(a.dev, (prefixes = new Map()));
    let ips = prefixes.get(a.prefix);
    if (!ips) prefixes.set(a.prefix, (ips = new Set()));
    ips.add(canonicalIp(a.ip));
  }

  has(a: AddressLike): boolean {
    return this.byDev.get(a.dev)?.get(a.prefix)?.has(canonicalIp(a.ip)) ?? false;
  }
}

/** One set per list, built on first use: the same lists (the host's, the state's, the wanted) are asked many times a run. */
const addressSets = new WeakMap<readonly AddressLike[], AddressSet>();
export function addressSetOf(list: readonly AddressLike[]): AddressSet {
  let set = addressSets.get(list);
  if (!set) addressSets.set(list, (set = new AddressSet(list)));
  return set;
}

/** O(1) per address: a balancer may own thousands of VIPs. */
export function hasAddress(facts: HostFacts, a: AddressLike): boolean {
  return addressSetOf(facts.ip.addresses).has(a);
}

/**
 * The wanted addresses that tula-dsr owns, for the state file: those it adds now and those it recorded before.
 * An address that was on the host before tula-dsr came is left out, so that `remove` leaves it in place.
 */
export function ownedAddresses(wanted: readonly HostAddress[], facts: HostFacts, state: HostState | null): StateAddress[] {
  const recorded = addressSetOf(state?.addresses ?? []);
  return wanted.filter((a) => !hasAddress(facts, a) || recorded.has(a)).map((a) => ({ ip: a.ip, prefix: a.prefix, dev: a.dev }));
}

/**
 * Above this many addresses, they are handled by one `ip -batch` step and reported as one task: one `ip` process
 * per address costs about 2 ms, which is 20 s for a balancer with 10,000 VIPs.
 */
export const ADDRESS_BATCH = 32;

/**
 * `ip -batch` stops at the first line that fails, so the step may have done part of its work. The undo of an add
 * deletes those of the addresses that are present (awk keeps the lines naming one, from one listing of the host's
 * addresses); the undo of a delete uses `replace`, which adds an address or leaves it as it is.
 */
function addressBatchStep(op: 'add' | 'del', written: readonly IpAddressLine[]): Step {
  // the undo's awk matches `ip -o addr show`, which prints addresses in canonical form
  const list = written.map((a) => ({ ...a, ip: canonicalIp(a.ip) }));
  const lines = (words: (a: IpAddressLine) => string) => list.map((a) => renderCommand([words(a)])).join(' ');
  const run = `printf '%s\\n' ${lines((a) => addressBatchLine(op, a))} | ip -batch -`;
  if (op === 'del') return { run, undo: `printf '%s\\n' ${lines((a) => addressBatchLine('replace', a))} | ip -batch -` };
  // both families: `ip -o addr show` prints IPv6 addresses in the same columns, in canonical form
  const present = `awk 'BEGIN { while (("ip -o addr show" | getline l) > 0) { split(l, f, " "); have[f[4] " dev " f[2]] = 1 } } ($0 in have) { print "addr del " $0 }'`;
  return { run, undo: `printf '%s\\n' ${lines((a) => `${a.ip}/${a.prefix} dev ${a.dev}`)} | ${present} | ip -batch -` };
}

function addressSummary(list: readonly { ip: string; prefix: number; dev: string }[]): string {
  const devs = [...new Set(list.map((a) => a.dev))].join(', ');
  return `addresses on ${devs}`;
}

export function addressTasks(wanted: readonly HostAddress[], facts: HostFacts): Task[] {
  const deprecate = wanted.filter((a) => a.deprecated && hasAddress(facts, a) && !isDeprecated(facts, a));
  const deprecateTasks = deprecate.map((a) =>
    changed(`address ${addressKey(a)}`, 'made deprecated (preferred_lft 0): never a source address', [deprecateAddressStep(a.ip, a.prefix, a.dev)]),
  );
  if (wanted.length > ADDRESS_BATCH) {
    const missing = wanted.filter((a) => !hasAddress(facts, a));
    const name = `${addressSummary(wanted)} (${wanted.length} wanted)`;
    if (!missing.length) return deprecateTasks.length ? deprecateTasks : [ok(name, 'all present')];
    return [
      changed(name, `${missing.length} added`, [addressBatchStep('add', missing)], missing.map((a) => `+ ${addressKey(a)}`).join('\n')),
      ...deprecateTasks,
    ];
  }
  return wanted.map((a) =>
    deprecate.includes(a)
      ? deprecateTasks[deprecate.indexOf(a)]
      : hasAddress(facts, a)
        ? ok(`address ${addressKey(a)}`, 'present')
        : changed(`address ${addressKey(a)}`, 'added', [addAddressStep(a.ip, a.prefix, a.dev, addressFlags(a))], `+ ${addressKey(a)}`),
  );
}

const deprecatedSets = new WeakMap<HostFacts, AddressSet>();

/** Whether the host has this address deprecated already (see HostAddress.deprecated); O(1), as hasAddress. */
function isDeprecated(facts: HostFacts, a: AddressLike): boolean {
  let set = deprecatedSets.get(facts);
  if (!set) deprecatedSets.set(facts, (set = new AddressSet(facts.ip.addresses.filter((x) => x.deprecated))));
  return set.has(a);
}

/** Removes addresses tula-dsr added earlier that the spec no longer wants (only those present on the host). */
export function staleAddressTasks(stale: readonly StateAddress[], facts: HostFacts, detail = 'no longer wanted: removed'): Task[] {
  const present = stale.filter((a) => hasAddress(facts, a));
  if (present.length > ADDRESS_BATCH) {
    return [
      changed(
        `${addressSummary(present)} (${present.length})`,
        detail,
        [addressBatchStep('del', present)],
        present.map((a) => `- ${addressKey(a)}`).join('\n'),
      ),
    ];
  }
  return present.map((a) => changed(`address ${addressKey(a)}`, detail, [removeAddressStep(a.ip, a.prefix, a.dev)], `- ${addressKey(a)}`));
}

export function staleAddresses(state: HostState | null, wanted: readonly HostAddress[]): StateAddress[] {
  const keys = addressSetOf(wanted);
  return (state?.addresses ?? []).filter((a) => !keys.has(a));
}

export interface TunnelWant {
  readonly name: string;
  readonly local: string;
  readonly remote: string;
}

/** Whether a remote end reads as "any" (`ip` prints `any`; older versions the unspecified address, or nothing). */
const isAnyRemote = (remote: string | undefined) => remote === undefined || remote === 'any' || remote === '0.0.0.0' || remote === '::';

/**
 * A tunnel, IPIP or IPv6-in-IPv6 (ip6tnl) by the family of its local end: present with the right kind, endpoints and
 * (ip6tnl) mode and encapsulation limit, and up; or (re)created.
 */
export function tunnelTask(t: TunnelWant, facts: HostFacts): Task {
  const link = facts.ip.links[t.name];
  const ipv6 = isIpv6(t.local);
  const kind = ipv6 ? 'ip6tnl' : 'ipip';
  const name = `tunnel ${t.name} (${kind} local ${t.local} remote ${t.remote})`;
  const remoteMatches = t.remote === 'any' ? isAnyRemote(link?.remote) : link?.remote === canonicalIp(t.remote);
  // the ip6ip6 mode, and no encapsulation limit option: 8 more bytes the MSS clamp does not allow for
  const modeMatches = !ipv6 || (link?.proto === 'ip6ip6' && link.noEncapLimit === true);
  if (link && link.kind === kind && link.local === canonicalIp(t.local) && remoteMatches && modeMatches) {
    return link.up
      ? ok(name, 'present')
      : changed(name, 'was down', [{ run: cmd('ip', 'link', 'set', t.name, 'up'), undo: cmd('ip', 'link', 'set', t.name, 'down'), allOrNothing: true }]);
  }
  const steps = link
    ? [removeTunnelStep(t.name, link.local ?? 'any', link.remote ?? 'any'), addTunnelStep(t.name, t.local, t.remote)]
    : [addTunnelStep(t.name, t.local, t.remote)];
  const mode = link?.kind === 'ip6tnl' ? ` mode ${link.proto ?? '?'}${link.noEncapLimit ? ' encaplimit none' : ''}` : '';
  return changed(name, link ? `had other settings (${link.kind ?? '?'} local ${link.local ?? '?'} remote ${link.remote ?? '?'}${mode})` : 'created', steps);
}

/** What each tunnel module carries, for the message when the kernel lacks it. */
const MODULE_PURPOSE: Readonly<Record<string, string>> = {
  [TUNNEL_MODULES[4]]: 'L3 DSR needs IPIP',
  [TUNNEL_MODULES[6]]: 'L3 DSR of IPv6 VIPs needs ip6tnl (IPv6 in IPv6)',
};

export function moduleTask(module: string, facts: HostFacts): Task {
  const name = `kernel module ${module}`;
  const state = facts.modules[module] ?? 'missing';
  if (state === 'loaded') return ok(name, 'loaded');
  if (state === 'missing')
    return failed(
      name,
      `the kernel (${facts.kernel}) has no ${module} module: ${MODULE_PURPOSE[module] ?? 'L3 DSR needs it'}; install the distribution kernel's modules or use mode 'l2'`,
    );
  // a module other software may use by now is not unloaded again
  return changed(name, 'loaded now', [{ run: cmd('modprobe', module), undo: ':' }]);
}

/** A systemd unit: enabled where systemd runs; written but honestly reported as not enabled elsewhere. */
export function unitTask(unit: string, facts: HostFacts, state: HostState | null, filesChanged: boolean): Task {
  const name = `boot unit ${unit}`;
  if (!facts.systemd) return ok(name, 'written, not enabled: systemd is not running on this host (run /etc/tula-dsr/*-up.sh from your init system)');
  const wasEnabled = state?.unit?.name === unit && state.unit.enabled;
  if (wasEnabled && !filesChanged) return ok(name, 'enabled');
  return changed(name, 'enabled', [
    {
      run: `${cmd('systemctl', 'daemon-reload')} && ${cmd('systemctl', '-q', 'enable', unit)}`,
      // a unit enabled before this run stays enabled; disabling one that is not enabled changes nothing
      undo: wasEnabled ? ':' : cmd('systemctl', '-q', 'disable', unit),
    },
  ]);
}

export function disableUnitStep(unit: string): { run: string; undo: string } {
  return { run: `${cmd('systemctl', '-q', 'disable', unit)} && ${cmd('systemctl', 'daemon-reload')}`, undo: cmd('systemctl', '-q', 'enable', unit) };
}

/** A file's folder and every folder above it, up to (not including) `/`: `mkdir -p` may create all of them. */
export function ancestorDirs(path: string): string[] {
  const dirs: string[] = [];
  for (let d = path.slice(0, path.lastIndexOf('/')); d; d = d.slice(0, d.lastIndexOf('/'))) dirs.push(d);
  return dirs;
}

/** Directories that tula-dsr creates for its files (parents too), recorded so that a full removal can remove them again. */
export function createdDirs(paths: readonly string[], facts: HostFacts, state: HostState | null): string[] {
  const dirs = new Set(state?.dirs ?? []);
  for (const dir of paths.flatMap(ancestorDirs)) if (facts.dirs[dir] === false) dirs.add(dir);
  return [...dirs].sort();
}
