import { renderCommand } from '../../model/shell';
import { tunnelAddArgs } from '../../model/backend-host';
import type { Step } from './task';

/** Step builders. Every command is an argv array rendered by renderCommand, the one place that quotes. */
export const cmd = (...argv: string[]): string => renderCommand(argv);

export function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

/** `if CONDITION; then COMMAND; fi`: undos act only where their step left something to undo. */
const onlyIf = (condition: string, command: string) => `if ${condition}; then ${command}; fi`;
const exists = (path: string) => cmd('test', '-e', path);
const linkExists = (name: string) => `${cmd('ip', 'link', 'show', name)} >/dev/null 2>&1`;

/**
 * Writes a file atomically: a temp file in the same directory, then rename. The file it replaces stays as a backup
 * (copied under a temp name, then renamed: whole or absent) until the run succeeds. The undo tells how far the step
 * got: while the temp file is there, the file was not replaced yet, so only the temp files go; otherwise it puts
 * the backup back, or removes a file that did not exist.
 */
export function writeFileStep(path: string, content: string, mode: string, existed: boolean): Step {
  const tmp = `${path}.tula-tmp`;
  const bak = `${path}.tula-bak`;
  const bakTmp = `${bak}.tula-tmp`;
  const run = [
    // a backup left by a run that was killed is not this run's
    cmd('rm', '-f', bak),
    // folders under /etc stay readable, as the distribution's own are (the script's umask is 077)
    `(umask 022 && ${cmd('mkdir', '-p', dirname(path))})`,
    `printf '%s' ${renderCommand([content])} > ${renderCommand([tmp])}`,
    cmd('chmod', mode, tmp),
    ...(existed ? [cmd('cp', '-p', path, bakTmp), cmd('mv', '-f', bakTmp, bak)] : []),
    cmd('mv', '-f', tmp, path),
  ].join(' && ');
  const undo = existed
    ? `if ${exists(tmp)}; then ${cmd('rm', '-f', tmp, bakTmp, bak)}; elif ${exists(bak)}; then ${cmd('mv', '-f', bak, path)}; fi`
    : cmd('rm', '-f', tmp, path);
  return { run, undo };
}

/** Removes a file, keeping a backup until the run succeeds. */
export function removeFileStep(path: string): Step {
  const bak = `${path}.tula-bak`;
  return { run: `${cmd('rm', '-f', bak)} && ${cmd('mv', '-f', path, bak)}`, undo: onlyIf(exists(bak), cmd('mv', '-f', bak, path)) };
}

/** Backups are dropped only once every step has succeeded. */
export function backupCleanupCommand(paths: readonly string[]): string {
  return paths.length ? cmd('rm', '-f', ...paths.map((p) => `${p}.tula-bak`)) : ':';
}

export function sysctlStep(key: string, value: string, previous: string | null): Step {
  return {
    run: cmd('sysctl', '-q', '-w', `${key}=${value}`),
    undo: previous === null ? ':' : cmd('sysctl', '-q', '-w', `${key}=${previous}`),
    allOrNothing: true,
  };
}

/** Whether `ip/prefix` is on `dev` (false as well when `dev` does not exist). */
export function addressPresent(ip: string, prefix: number, dev: string): string {
  return `${cmd('ip', '-o', 'addr', 'show', 'dev', dev, 'to', `${ip}/${prefix}`)} 2>/dev/null | grep -q .`;
}

/** `flags` (addressFlags): an IPv6 VIP the balancer owns is added `nodad` and deprecated (see HostAddress). */
export function addAddressStep(ip: string, prefix: number, dev: string, flags: readonly string[] = []): Step {
  return {
    run: cmd('ip', 'addr', 'add', `${ip}/${prefix}`, 'dev', dev, ...flags),
    undo: onlyIf(addressPresent(ip, prefix, dev), cmd('ip', 'addr', 'del', `${ip}/${prefix}`, 'dev', dev)),
    allOrNothing: true,
  };
}

/** Makes an address the host already has deprecated (never a source address); the undo makes it preferred again. */
export function deprecateAddressStep(ip: string, prefix: number, dev: string): Step {
  return {
    run: cmd('ip', 'addr', 'change', `${ip}/${prefix}`, 'dev', dev, 'preferred_lft', '0'),
    undo: cmd('ip', 'addr', 'change', `${ip}/${prefix}`, 'dev', dev, 'preferred_lft', 'forever'),
    allOrNothing: true,
  };
}

export function removeAddressStep(ip: string, prefix: number, dev: string): Step {
  return {
    run: cmd('ip', 'addr', 'del', `${ip}/${prefix}`, 'dev', dev),
    undo: cmd('ip', 'addr', 'replace', `${ip}/${prefix}`, 'dev', dev),
    allOrNothing: true,
  };
}

/** Creates the tunnel (IPIP or ip6tnl, by the family of its local end) unless it exists, and brings it up. */
const tunnelUp = (name: string, local: string, remote: string) =>
  `{ ${linkExists(name)} || ${cmd(...tunnelAddArgs(name, local, remote))}; } && ${cmd('ip', 'link', 'set', name, 'up')}`;

/** The undo deletes the tunnel if it is there: the run may have stopped after creating it, before bringing it up. */
export function addTunnelStep(name: string, local: string, remote: string): Step {
  return {
    run: `${cmd(...tunnelAddArgs(name, local, remote))} && ${cmd('ip', 'link', 'set', name, 'up')}`,
    undo: onlyIf(linkExists(name), cmd('ip', 'link', 'del', name)),
  };
}

export function removeTunnelStep(name: string, local: string, remote: string): Step {
  return { run: cmd('ip', 'link', 'del', name), undo: tunnelUp(name, local, remote), allOrNothing: true };
}

/** Directories tula-dsr created are removed once empty; rmdir leaves a directory that holds anything else. */
export function removeDirsCommands(dirs: readonly string[]): string[] {
  return [...dirs].sort((a, b) => b.length - a.length).map((d) => `{ rmdir ${cmd(d)} 2>/dev/null || true; }`);
}
