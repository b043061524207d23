/**
 * What the VM lab needs from Debian, fetched with apt and cached (git-ignored):
 *   - qemu-system-x86 (installed with apt-get when qemu-system-x86_64 is missing; needs root),
 *   - linux-image-cloud-amd64's versioned kernel package (found with `apt-cache depends`), downloaded, not installed,
 *   - busybox-static and socat, downloaded, not installed (the host does not need them).
 * A warm run reads the manifest and touches neither apt nor the network.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execFile, execOk } from '../exec';
import { cacheDir } from './paths';

export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
export const EXTRA_PACKAGES = ['busybox-static', 'socat'] as const;

export interface VmPackages {
  /** e.g. 6.1.0-56-cloud-amd64 */
  readonly kernelVersion: string;
  readonly vmlinuz: string;
  /** lib/modules/<version> of the unpacked kernel package. */
  readonly modulesDir: string;
  readonly busybox: string;
  readonly socat: string;
  /** The .deb file names, part of the base image's cache key. */
  readonly debs: readonly string[];
}

interface Manifest {
  readonly kernelPackage: string;
  readonly debs: Record<string, string>;
}

export type Log = (line: string) => void;

/** Absolute path of qemu-system-x86_64; installs qemu-system-x86 with apt-get when it is missing (root only). */
export async function ensureQemu(log: Log): Promise<string> {
  const found = await which('qemu-system-x86_64');
  if (found) return found;
  if (process.getuid?.() !== 0) {
    throw new Error(
      'VM lab: qemu-system-x86_64 is not installed, and installing it (apt-get install qemu-system-x86) needs root; run as root or install it yourself',
    );
  }
  log('installing qemu-system-x86 with apt-get (about 17 MB of packages)');
  await aptUpdateIfNeeded(log, 'qemu-system-x86');
  const r = await execFile(['apt-get', 'install', '-y', '-qq', '--no-install-recommends', 'qemu-system-x86'], {
    timeoutMs: 600_000,
    env: { DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.code !== 0) throw new Error(`VM lab: apt-get install qemu-system-x86 failed (exit ${r.code}):\n${r.stderr.trim() || r.stdout.trim()}`);
  const installed = await which('qemu-system-x86_64');
  if (!installed) throw new Error('VM lab: apt-get installed qemu-system-x86, but qemu-system-x86_64 is still not on PATH');
  return installed;
}

async function which(cmd: string): Promise<string | null> {
  const r = await execFile(['sh', '-c', `command -v ${cmd}`]);
  return r.code === 0 && r.stdout.trim() ? r.stdout.trim() : null;
}

/** Runs `apt-get update` when apt does not know `pkg` yet (a fresh machine has no package lists). */
async function aptUpdateIfNeeded(log: Log, pkg: string): Promise<void> {
  const r = await execFile(['apt-cache', 'policy', pkg]);
  if (r.code === 0 && /Candidate: (?!\(none\))/.test(r.stdout)) return;
  log('apt-get update (the package lists do not know ' + pkg + ')');
  await execOk(['apt-get', 'update', '-qq'], { timeoutMs: 300_000 });
}

/** The versioned kernel package behind the meta package, e.g. linux-image-6.1.0-56-cloud-amd64. */
export async function resolveKernelPackage(log: Log): Promise<string> {
  await aptUpdateIfNeeded(log, KERNEL_META_PACKAGE);
  const r = await execOk(['apt-cache', 'depends', KERNEL_META_PACKAGE]);
  const m = /Depends: (linux-image-[0-9][^\s<>]*)/.exec(r.stdout);
  if (!m) throw new Error(`VM lab: apt-cache depends ${KERNEL_META_PACKAGE} names no linux-image-<version> package:\n${r.stdout}`);
  return m[1];
}

function unpackedDir(deb: string): string {
  return path.join(cacheDir(), 'pkgs', deb.replace(/\.deb$/, ''));
}

/** Downloads (cold) or finds (warm) the packages, unpacked under the cache. Set TULA_DSR_VM_REFRESH=1 to look for newer ones. */
export async function fetchPackages(log: Log): Promise<VmPackages> {
  const cache = cacheDir();
  const manifestPath = path.join(cache, 'packages.json');
  let manifest: Manifest | undefined;
  if (existsSync(manifestPath) && process.env.TULA_DSR_VM_REFRESH !== '1') {
    manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
    if (!Object.values(manifest.debs).every((d) => existsSync(unpackedDir(d)))) manifest = undefined;
  }
  if (!manifest) {
    if (process.getuid?.() !== 0) throw new Error('VM lab: downloading the kernel and busybox with apt-get needs root');
    const kernelPackage = await resolveKernelPackage(log);
    const debDir = path.join(cache, 'debs');
    mkdirSync(debDir, { recursive: true });
    const wanted = [kernelPackage, ...EXTRA_PACKAGES];
    const have = (pkg: string) => readdirSync(debDir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
    const missing = wanted.filter((p) => !have(p));
    if (missing.length) {
      log(`downloading with apt-get: ${missing.join(', ')} (into ${debDir})`);
      // apt-get download writes into the current directory
      const r = await execFile(['sh', '-c', 'cd "$1" && shift && exec apt-get download "$@"', 'sh', debDir, ...missing], { timeoutMs: 600_000 });
      // apt warns that it downloads "unsandboxed as root" into a folder _apt cannot write: harmless
      if (r.code !== 0) throw new Error(`VM lab: apt-get download ${missing.join(' ')} failed (exit ${r.code}):\n${r.stderr.trim()}`);
    }
    const debs: Record<string, string> = {};
    for (const pkg of wanted) {
      const deb = have(pkg);
      if (!deb) throw new Error(`VM lab: apt-get download did not produce ${pkg}_*.deb in ${debDir}`);
      debs[pkg] = deb;
      const dir = unpackedDir(deb);
      if (!existsSync(dir)) {
        const tmp = `${dir}.tmp${process.pid}`;
        rmSync(tmp, { recursive: true, force: true });
        mkdirSync(tmp, { recursive: true });
        await execOk(['dpkg-deb', '-x', path.join(debDir, deb), tmp], { timeoutMs: 120_000 });
        renameSync(tmp, dir);
      }
    }
    manifest = { kernelPackage, debs };
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
  }
  const kernelDir = unpackedDir(manifest.debs[manifest.kernelPackage]);
  const versions = readdirSync(path.join(kernelDir, 'lib', 'modules'));
  if (versions.length !== 1) throw new Error(`VM lab: expected one kernel version in ${kernelDir}/lib/modules, found: ${versions.join(', ')}`);
  const kernelVersion = versions[0];
  const result: VmPackages = {
    kernelVersion,
    vmlinuz: path.join(kernelDir, 'boot', `vmlinuz-${kernelVersion}`),
    modulesDir: path.join(kernelDir, 'lib', 'modules', kernelVersion),
    busybox: path.join(unpackedDir(manifest.debs['busybox-static']), 'bin', 'busybox'),
    socat: path.join(unpackedDir(manifest.debs.socat), 'usr', 'bin', 'socat'),
    debs: Object.values(manifest.debs).sort(),
  };
  for (const f of [result.vmlinuz, result.busybox, result.socat]) {
    if (!existsSync(f)) throw new Error(`VM lab: ${f} is missing from the unpacked packages; delete ${cache} and run again`);
  }
  return result;
}
