import type { HostFacts } from '../facts/gather';
import type { HostState } from '../state';
import { disableUnitStep, staleAddressTasks } from './common';
import { removeStateStep } from './state-file';
import { runtimeStopTask } from './runtime';
import { keepalivedStopTask } from './keepalived';
import { nftScratchFiles } from './nft';
import { Task, changed, ok } from './task';
import { cmd, removeFileStep, removeTunnelStep, sysctlStep } from './steps';

/**
 * Full removal of what tula-dsr set up, guarded by generation: it runs only when the host still carries the
 * generation being destroyed. Order is the reverse of apply: VIPs leave before the ARP sysctls return to their
 * original values, rules go before the tunnels they use.
 */
export function planRemoveTasks(facts: HostFacts, statePath: string, generation: string): { tasks: Task[]; removedFiles: string[] } {
  const state: HostState | null = facts.state;
  if (!state) return { tasks: [ok('remove', 'nothing to remove: tula-dsr has not configured this host')], removedFiles: [] };
  if (state.generation !== generation) {
    return {
      tasks: [
        ok('remove', `skipped: the host runs generation ${state.generation.slice(0, 12)}, not ${generation.slice(0, 12)}; a newer configuration is live`),
      ],
      removedFiles: [],
    };
  }
  const tasks: Task[] = [];
  // keepalived first: it drops the VIPs it holds and tells the other member (priority 0), which takes over at once
  const vrrp = keepalivedStopTask(facts, state, 'stopped');
  if (vrrp) tasks.push(vrrp);
  const stop = runtimeStopTask(facts, state, 'stopped');
  if (stop) tasks.push(stop);
  for (const key of Object.keys(state.nft)) {
    const [family, name] = key.split(' ');
    if (facts.nft[key]?.table.exists)
      tasks.push(changed(`nft table ${key}`, 'removed', [{ run: cmd('nft', 'delete', 'table', family, name), undo: ':', allOrNothing: true }]));
  }
  tasks.push(...staleAddressTasks(state.addresses, facts, 'removed'));
  for (const t of state.tunnels) {
    if (facts.ip.links[t.name]) tasks.push(changed(`tunnel ${t.name}`, 'removed', [removeTunnelStep(t.name, t.local, t.remote)]));
  }
  for (const [key, original] of Object.entries(state.originalSysctls)) {
    const current = facts.sysctls[key] ?? null;
    if (original !== null && current !== original) {
      tasks.push(changed(`sysctl ${key}=${original}`, `restored (was ${current})`, [sysctlStep(key, original, current)]));
    }
  }
  if (state.unit?.enabled && facts.systemd) tasks.push(changed(`boot unit ${state.unit.name}`, 'disabled', [disableUnitStep(state.unit.name)]));
  const removedFiles = state.files.filter((f) => facts.files[f]);
  for (const path of removedFiles) tasks.push(changed(`file ${path}`, 'removed', [removeFileStep(path)]));
  const scratch = Object.keys(state.nft).flatMap((key) => {
    const [family, name] = key.split(' ');
    return Object.values(nftScratchFiles(family, name));
  });
  tasks.push(changed(`state ${statePath}`, 'removed', [{ run: cmd('rm', '-f', ...scratch), undo: ':' }, removeStateStep(statePath)]));
  return { tasks, removedFiles };
}
