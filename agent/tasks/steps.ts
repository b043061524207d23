import { renderCommand } from '../../model/shell';
import type { Step } from './task';

/** Step builders. Every command is an argv array rendered by renderCommand, the one place that quotes. */
export const cmd = (...argv: string[]): string => renderCommand(argv);

export function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

/**
 * Writes a file atomically: a temp file in the same directory, then rename. The undo restores the backup
 * taken just before the rename, or removes the file if it did not exist.
 */
export function writeFileStep(path: string, content: string, mode: string, existed: boolean): Step {
  const tmp = `${path}.tula-tmp`;
  const bak = `${path}.tula-bak`;
  const run = [
    // folders under /etc stay readable, as the distribution's own are (the script's umask is 077)
    `(umask 022 && ${cmd('mkdir', '-p', dirname(path))})`,
    `printf '%s' ${renderCommand([content])} > ${renderCommand([tmp])}`,
    cmd('chmod', mode, tmp),
    ...(existed ? [cmd('cp', '-p', path, bak)] : []),
    cmd('mv', '-f', tmp, path),
  ].join(' && ');
  const undo = existed ? cmd('mv', '-f', bak, path) : cmd('rm', '-f', path);
  return { run, undo };
}

/** Removes a file, keeping a backup until the run succeeds. */
export function removeFileStep(path: string): Step {
  const bak = `${path}.tula-bak`;
  return { run: cmd('mv', '-f', path, bak), undo: cmd('mv', '-f', bak, path) };
}

/** Backups are dropped only once every step has succeeded. */
export function backupCleanupCommand(paths: readonly string[]): string {
  return paths.length ? cmd('rm', '-f', ...paths.map((p) => `${p}.tula-bak`)) : ':';
}

export function sysctlStep(key: string, value: string, previous: string | null): Step {
  return {
    run: cmd('sysctl', '-q', '-w', `${key}=${value}`),
    undo: previous === null ? ':' : cmd('sysctl', '-q', '-w', `${key}=${previous}`),
  };
}

export function addAddressStep(ip: string, prefix: number, dev: string): Step {
  return { run: cmd('ip', 'addr', 'add', `${ip}/${prefix}`, 'dev', dev), undo: cmd('ip', 'addr', 'del', `${ip}/${prefix}`, 'dev', dev) };
}

export function removeAddressStep(ip: string, prefix: number, dev: string): Step {
  return { run: cmd('ip', 'addr', 'del', `${ip}/${prefix}`, 'dev', dev), undo: cmd('ip', 'addr', 'add', `${ip}/${prefix}`, 'dev', dev) };
}

export function addTunnelStep(name: string, local: string, remote: string): Step {
  return {
    run: `${cmd('ip', 'link', 'add', name, 'type', 'ipip', 'local', local, 'remote', remote)} && ${cmd('ip', 'link', 'set', name, 'up')}`,
    undo: cmd('ip', 'link', 'del', name),
  };
}

export function removeTunnelStep(name: string, local: string, remote: string): Step {
  return { run: cmd('ip', 'link', 'del', name), undo: addTunnelStep(name, local, remote).run };
}
