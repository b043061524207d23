/**
 * Host state snapshots, to prove that `terraform destroy` puts every host back byte for byte: the whole nft
 * ruleset, every address, every `net.*` sysctl of the host's namespace, and the files under /etc and /var.
 *
 * Files: a lab host's /etc and /var are overlays of the machine's (see ../netns.ts). Everything the host ever
 * wrote there is in the overlay's upper layer, which the host's anchor process has as its working directory
 * (`/proc/<anchor>/cwd/{etc,var}`). A snapshot records the merged view (type, mode, size, sha256) of every path
 * the upper layer holds; comparing two snapshots looks at the union of both sets of paths, and a path that only
 * one side holds is compared with the machine's own file (the lower layer), which is what the host saw then.
 * So nothing the host touched escapes, and packages installed on the machine meanwhile do not count.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, Stats } from 'node:fs';
import * as path from 'node:path';
import type { LabHost } from '../topology';

export const SNAPSHOT_TREES = ['etc', 'var'] as const;

export interface HostSnapshot {
  readonly host: string;
  readonly ruleset: string;
  readonly addresses: string;
  readonly sysctls: string;
  /** `/etc/...` or `/var/...` -> "type mode size sha256" (merged view), for each path in the upper layer. */
  readonly files: Readonly<Record<string, string>>;
}

/** Sysctls that count events rather than hold configuration. */
const VOLATILE_SYSCTL = /^net\.netfilter\.nf_conntrack_count\b/;

function describe(file: string): string {
  let st: Stats;
  try {
    st = lstatSync(file);
  } catch {
    return 'absent';
  }
  const mode = (st.mode & 0o7777).toString(8);
  if (st.isSymbolicLink()) return `link ${readlinkSync(file)}`;
  if (st.isDirectory()) return `dir ${mode}`;
  if (st.isCharacterDevice()) return `chardev ${mode} ${st.rdev}`;
  if (!st.isFile()) return `other ${mode}`;
  return `file ${mode} ${st.size} ${createHash('sha256').update(readFileSync(file)).digest('hex')}`;
}

function walk(root: string, rel = ''): string[] {
  let entries: string[];
  try {
    entries = readdirSync(path.join(root, rel));
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const e of entries.sort()) {
    const r = rel ? `${rel}/${e}` : e;
    out.push(r);
    const st = lstatSync(path.join(root, r));
    if (st.isDirectory()) out.push(...walk(root, r));
  }
  return out;
}

async function run(host: LabHost, script: string): Promise<string> {
  const r = await host.exec(script);
  if (r.code !== 0) throw new Error(`${host.name}: ${script} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

export async function snapshotHost(host: LabHost): Promise<HostSnapshot> {
  const [ruleset, addresses, sysctlText] = await Promise.all([
    run(host, 'nft list ruleset'),
    run(host, 'ip addr show'),
    run(host, 'sysctl -a 2>/dev/null | grep "^net\\." || true'),
  ]);
  // IPv6 duplicate address detection may still run on a fresh lab (`tentative`): the kernel's doing, not a host change
  const settled = addresses.replace(/ tentative\b/g, '');
  const sysctls = sysctlText
    .split('\n')
    .filter((l) => l && !VOLATILE_SYSCTL.test(l))
    .join('\n');
  const files: Record<string, string> = {};
  for (const tree of SNAPSHOT_TREES) {
    const upper = `/proc/${host.anchorPid}/cwd/${tree}`;
    for (const rel of walk(upper)) files[`/${tree}/${rel}`] = describe(host.path(`/${tree}/${rel}`));
  }
  return { host: host.name, ruleset, addresses: settled, sysctls, files };
}

/** Differences between two snapshots of the same host, as readable lines (empty: identical). */
export function diffSnapshots(before: HostSnapshot, after: HostSnapshot): string[] {
  const diffs: string[] = [];
  const text = (what: string, a: string, b: string) => {
    if (a === b) return;
    const al = a.split('\n');
    const bl = b.split('\n');
    const gone = al.filter((l) => !bl.includes(l)).map((l) => `  - ${l}`);
    const added = bl.filter((l) => !al.includes(l)).map((l) => `  + ${l}`);
    diffs.push(`${before.host} ${what} differs:`, ...(gone.length || added.length ? [...gone, ...added] : ['  (same lines, other order)']));
  };
  text('nft ruleset', before.ruleset, after.ruleset);
  text('addresses', before.addresses, after.addresses);
  text('sysctls', before.sysctls, after.sysctls);
  const paths = [...new Set([...Object.keys(before.files), ...Object.keys(after.files)])].sort();
  for (const p of paths) {
    // a path only one side's upper layer holds was, on the other side, the machine's own file (or nothing)
    const a = before.files[p] ?? describe(p);
    const b = after.files[p] ?? describe(p);
    if (a !== b) diffs.push(`${before.host} ${p}: ${a} -> ${b}`);
  }
  return diffs;
}
