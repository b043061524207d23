/**
 * Kernel modules for the VM: the chosen ones plus everything they depend on, read from each module's own
 * `.modinfo` ELF section (the kernel package ships no modules.dep; depmod runs at install time). Writes
 * modules.dep and modules.alias in depmod's text format, which busybox modprobe reads, and a load order for init.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';

export interface ModuleInfo {
  readonly name: string;
  /** Path relative to lib/modules/<version>, e.g. kernel/net/ipv4/ipip.ko */
  readonly rel: string;
  readonly depends: readonly string[];
  readonly aliases: readonly string[];
}

/** The strings of an ELF64 little-endian object's `.modinfo` section (key=value, NUL-separated). */
export function readModinfo(file: Buffer): string[] {
  if (file.readUInt32BE(0) !== 0x7f454c46 || file[4] !== 2 || file[5] !== 1) throw new Error('not an ELF64 little-endian file');
  const shoff = Number(file.readBigUInt64LE(0x28));
  const shentsize = file.readUInt16LE(0x3a);
  const shnum = file.readUInt16LE(0x3c);
  const shstrndx = file.readUInt16LE(0x3e);
  const section = (i: number) => {
    const at = shoff + i * shentsize;
    return { name: file.readUInt32LE(at), offset: Number(file.readBigUInt64LE(at + 24)), size: Number(file.readBigUInt64LE(at + 32)) };
  };
  const strtab = section(shstrndx);
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const nameEnd = file.indexOf(0, strtab.offset + s.name);
    if (file.toString('latin1', strtab.offset + s.name, nameEnd) === '.modinfo') {
      return file
        .toString('latin1', s.offset, s.offset + s.size)
        .split('\0')
        .filter(Boolean);
    }
  }
  return [];
}

const moduleName = (file: string) => path.basename(file).replace(/\.ko$/, '').replace(/-/g, '_');

/** name → relative path of every .ko under lib/modules/<version>/kernel. */
export function indexModules(modulesDir: string): Map<string, string> {
  const index = new Map<string, string>();
  const walk = (rel: string) => {
    for (const entry of readdirSync(path.join(modulesDir, rel), { withFileTypes: true })) {
      const child = `${rel}/${entry.name}`;
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.ko')) index.set(moduleName(entry.name), child);
    }
  };
  walk('kernel');
  return index;
}

/**
 * The seeds (module names, or `dir/` prefixes such as `kernel/net/netfilter/` for every module directly in that
 * folder) and their dependencies, in load order: every module after all of its dependencies.
 */
export function resolveModules(modulesDir: string, seeds: readonly string[]): ModuleInfo[] {
  const index = indexModules(modulesDir);
  const infos = new Map<string, ModuleInfo>();
  const load = (name: string, wantedBy: string): ModuleInfo => {
    const known = infos.get(name);
    if (known) return known;
    const rel = index.get(name);
    if (!rel) throw new Error(`VM lab: kernel module ${name} (needed by ${wantedBy}) is not in ${modulesDir}; is it built in? (see modules.builtin)`);
    const strings = readModinfo(readFileSync(path.join(modulesDir, rel)));
    const value = (k: string) => strings.filter((s) => s.startsWith(`${k}=`)).map((s) => s.slice(k.length + 1));
    const depends = (value('depends')[0] ?? '')
      .split(',')
      .filter(Boolean)
      .map((d) => d.replace(/-/g, '_'));
    const info = { name, rel, depends, aliases: value('alias') };
    infos.set(name, info);
    for (const d of depends) load(d, name);
    return info;
  };
  const builtin = new Set(readFileSync(path.join(modulesDir, 'modules.builtin'), 'utf8').split('\n').filter(Boolean).map(moduleName));
  for (const seed of seeds) {
    if (seed.endsWith('/')) {
      const dir = path.join(modulesDir, seed);
      for (const f of readdirSync(dir)) if (f.endsWith('.ko') && statSync(path.join(dir, f)).isFile()) load(moduleName(f), seed);
    } else if (!builtin.has(seed)) load(seed, 'the VM lab');
  }
  // depth-first post-order gives dependencies first
  const ordered: ModuleInfo[] = [];
  const seen = new Set<string>();
  const visit = (m: ModuleInfo) => {
    if (seen.has(m.name)) return;
    seen.add(m.name);
    for (const d of m.depends) visit(infos.get(d)!);
    ordered.push(m);
  };
  for (const m of [...infos.values()].sort((a, b) => (a.name < b.name ? -1 : 1))) visit(m);
  return ordered;
}

/** The transitive dependencies of one module, the ones to load last first (depmod's convention). */
function closure(m: ModuleInfo, byName: Map<string, ModuleInfo>): ModuleInfo[] {
  const out: ModuleInfo[] = [];
  const seen = new Set<string>();
  const visit = (x: ModuleInfo) => {
    for (const d of x.depends) {
      if (seen.has(d)) continue;
      seen.add(d);
      visit(byName.get(d)!);
      out.push(byName.get(d)!);
    }
  };
  visit(m);
  return out.reverse();
}

export function renderModulesDep(modules: readonly ModuleInfo[]): string {
  const byName = new Map(modules.map((m) => [m.name, m]));
  return modules
    .map(
      (m) =>
        `${m.rel}:${closure(m, byName)
          .map((d) => ` ${d.rel}`)
          .join('')}\n`,
    )
    .join('');
}

export function renderModulesAlias(modules: readonly ModuleInfo[]): string {
  return modules.flatMap((m) => m.aliases.map((a) => `alias ${a} ${m.name}\n`)).join('');
}

/** The given modules and their dependencies, in load order (for init's insmod loop). */
export function loadOrder(modules: readonly ModuleInfo[], names: readonly string[]): ModuleInfo[] {
  const byName = new Map(modules.map((m) => [m.name, m]));
  const out: ModuleInfo[] = [];
  const seen = new Set<string>();
  const visit = (name: string) => {
    if (seen.has(name)) return;
    const m = byName.get(name);
    if (!m) throw new Error(`VM lab: module ${name} is not part of the image`);
    seen.add(name);
    for (const d of m.depends) visit(d);
    out.push(m);
  };
  for (const n of names) visit(n);
  return out;
}
