import { ensureDirCommand, removeFilesCommand, renderCommand, sha256AssignCommand } from '../../model/shell';
import { tunnelAddArgs } from '../../model/backend-host';
import { sha256Hex } from '../../model/digest';
import { lineEdits } from '../../model/line-edits';
import type { Step } from './task';
import type { FileFact } from '../facts/parsers';

/** Step builders. Every command is an argv array rendered by renderCommand, the one place that quotes. */
export const cmd = (...argv: string[]): string => renderCommand(argv);

export function dirname(path: string): string {
  return path.slice(0, path.lastIndexOf('/')) || '/';
}

/** `if CONDITION; then COMMAND; fi`: undos act only where their step left something to undo. */
const onlyIf = (condition: string, command: string) => `if ${condition}; then ${command}; fi`;
const exists = (path: string) => cmd('test', '-e', path);
const linkExists = (name: string) => `${cmd('ip', 'link', 'show', name)} >/dev/null 2>&1`;

/** What the host holds now at `path`, exactly (its hash matched the text): the base a line patch applies to. */
export interface KnownContent {
  readonly path: string;
  readonly content: string;
}

/** Below this size a file always travels whole: a patch would save little. */
export const PATCH_MIN_BYTES = 16 * 1024;

/** A fact's text as the base of a line patch, when large and exactly the host's (a file without a final newline reads back with one). */
export function knownContent(file: FileFact): KnownContent | undefined {
  return file.content.length >= PATCH_MIN_BYTES && sha256Hex(file.content) === file.sha256 ? { path: file.path, content: file.content } : undefined;
}
/** More changed lines than this, and the file travels whole (the diff's cost grows with their square). */
const PATCH_MAX_LINES = 2000;

/**
 * Applies a line patch read from stdin (`k N` keeps N lines of the file, `d N` drops N, `i TEXT` inserts a line)
 * to the file named second; POSIX awk (mawk, gawk, busybox). A patch always has at least one line, so the first
 * file's records are the patch's.
 */
const PATCH_AWK = String.raw`NR==FNR{o[++n]=$0;next} {while(!left&&k<n){k++;t=substr(o[k],1,1);if(t=="i")print substr(o[k],3);else{m=t;left=substr(o[k],3)+0}} if(left){left--;if(m=="k")print}else print} END{while(k<n){k++;if(substr(o[k],1,1)=="i")print substr(o[k],3)}}`;

/** The patch text that turns `base` into `content`, or null when sending `content` whole is as good. */
export function linePatch(base: string, content: string): string | null {
  if (content.length < PATCH_MIN_BYTES || !content.endsWith('\n') || !base.endsWith('\n')) return null;
  const edits = lineEdits(base.slice(0, -1).split('\n'), content.slice(0, -1).split('\n'), PATCH_MAX_LINES);
  if (!edits) return null;
  const text = edits.map((e) => (e.op === 'insert' ? e.lines.map((l) => `i ${l}\n`).join('') : `${e.op[0]} ${e.count}\n`)).join('');
  return text.length * 2 < content.length ? text : null;
}

/**
 * Shell that writes `content` to `target`: the text itself, or, when the host's current text is known and large, a
 * line patch to it, whose result must hash as `content` does (a base changed since the facts fails the step, and
 * the run rolls back). A weight change on a 10,000-VIP balancer sends a few lines instead of a megabyte.
 */
export function writeContentCommand(target: string, content: string, base?: KnownContent): string {
  const patch = base ? linePatch(base.content, content) : null;
  if (!base || patch === null) return `printf '%s' ${renderCommand([content])} > ${renderCommand([target])}`;
  const refuse = `{ echo ${renderCommand([`${base.path} changed since the facts were read: the patched text does not hash as expected`])} >&2; false; }`;
  return `printf '%s' ${renderCommand([patch])} | awk ${renderCommand([PATCH_AWK])} - ${renderCommand([base.path])} > ${renderCommand([target])} && { ${sha256AssignCommand('s', target)}; [ "$s" = ${sha256Hex(content)} ] || ${refuse}; }`;
}

/** The umask every apply script runs with (agent/script.ts). */
export const SCRIPT_UMASK = '077';
/** Modes a file created by a shell redirect (0666 less the umask) can have, and the umask that gives each. */
const UMASK_OF_MODE: Readonly<Record<string, string>> = { '0644': '022', '0600': SCRIPT_UMASK };

/**
 * Writes a file atomically: a temp file in the same directory, then rename. The file it replaces stays as a backup
 * (copied under a temp name, then renamed: whole or absent) until the run succeeds. The undo tells how far the step
 * got: while the temp file is there, the file was not replaced yet, so only the temp files go; otherwise it puts
 * the backup back, or removes a file that did not exist.
 */
export function writeFileStep(path: string, content: string, mode: string, existed: boolean, base?: KnownContent): Step {
  const tmp = `${path}.tula-tmp`;
  const bak = `${path}.tula-bak`;
  const bakTmp = `${bak}.tula-tmp`;
  const write = writeContentCommand(tmp, content, base);
  const umask = UMASK_OF_MODE[mode];
  const run = [
    // a backup or temp file left by a run that was killed is not this run's (and a temp file would keep its mode)
    removeFilesCommand([bak, tmp]),
    // folders under /etc stay readable, as the distribution's own are (the script's umask is 077)
    ensureDirCommand(dirname(path), '022'),
    // the usual modes come from the umask the file is created with, which saves a chmod process per file
    ...(umask === SCRIPT_UMASK
      ? [write]
      : umask
        ? [`{ umask ${umask}; ${write}; wrote=$?; umask ${SCRIPT_UMASK}; [ "$wrote" = 0 ]; }`]
        : [write, cmd('chmod', mode, tmp)]),
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
  return removeFilesCommand(paths.map((p) => `${p}.tula-bak`));
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
