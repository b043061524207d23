/**
 * The base initramfs: busybox-static applets, the host's own iproute2, nft, sshd, dash, flock and procps sysctl
 * (with the libraries `ldd` lists), socat, tcpdump when the host has it, and the kernel modules the lab needs.
 * It holds no keys and no lab script: those go into a small per-run archive appended to it (see vm-lab.ts).
 * The image is cached under a key made of every input's bytes, so a warm build is a lookup.
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { execFile, execOk } from '../exec';
import { CpioArchive } from './cpio';
import type { VmPackages } from './fetch';
import { loadOrder, renderModulesAlias, renderModulesDep, resolveModules } from './modules';
import { cacheDir } from './paths';

/** Bump when the image layout changes, so that cached images are rebuilt. */
const LAYOUT_VERSION = 'tula-dsr-vm-base/1';

/**
 * The host's own binaries, at the same paths in the VM. Real tools come first in PATH; busybox fills the gaps.
 * `env` must be the real one: the agent runs `env LC_ALL=C sh -s`, and Debian's busybox (FEATURE_PREFER_APPLETS)
 * would exec its own `sh` applet for that instead of dash, whose scripts then get busybox's `ip`.
 */
export const HOST_BINARIES = ['ip', 'nft', 'sshd', 'dash', 'flock', 'sysctl', 'env'] as const;
/** Used when the host has them (debugging: `tcpdump`, and `nft monitor trace` needs nothing more). */
export const OPTIONAL_HOST_BINARIES = ['tcpdump'] as const;

/**
 * Busybox applets, each installed as its own symlink. Never `ip` (the agent must get iproute2: busybox's `ip`
 * lacks `-j` and creates ipip tunnels differently), never `sh` (the login shell is dash), never `sysctl`, `flock`
 * or `env` (the real ones are installed). Applets that run other programs (timeout, xargs, setsid) would run a
 * busybox applet of the same name first: the lab's scripts call them only for programs that are not applets.
 */
export const BUSYBOX_APPLETS = [
  '[',
  'ash',
  'awk',
  'base64',
  'basename',
  'cat',
  'chmod',
  'chown',
  'cmp',
  'cp',
  'cut',
  'date',
  'dd',
  'df',
  'diff',
  'dirname',
  'dmesg',
  'du',
  'echo',
  'egrep',
  'expr',
  'false',
  'fgrep',
  'find',
  'free',
  'grep',
  'halt',
  'head',
  'hexdump',
  'hostname',
  'httpd',
  'id',
  'insmod',
  'kill',
  'killall',
  'less',
  'ln',
  'ls',
  'lsmod',
  'md5sum',
  'mkdir',
  'mkfifo',
  'mknod',
  'mktemp',
  'modinfo',
  'modprobe',
  'more',
  'mount',
  'mv',
  'nc',
  'netstat',
  'nproc',
  'nsenter',
  'od',
  'pidof',
  'ping',
  'poweroff',
  'printf',
  'ps',
  'pwd',
  'readlink',
  'realpath',
  'reboot',
  'rm',
  'rmdir',
  'rmmod',
  'sed',
  'seq',
  'setsid',
  'sha256sum',
  'sleep',
  'sort',
  'stat',
  'stty',
  'sync',
  'tail',
  'tee',
  'test',
  'time',
  'timeout',
  'top',
  'touch',
  'tr',
  'true',
  'truncate',
  'umount',
  'uname',
  'uniq',
  'unshare',
  'uptime',
  'usleep',
  'vi',
  'wc',
  'wget',
  'which',
  'xargs',
  'yes',
  'zcat',
] as const;

/** Modules in the image: all netfilter and bridge modules, the tunnels (IPIP, ip6tnl), veth and the virtio NIC, with dependencies. */
export const MODULE_SEEDS = [
  'kernel/net/netfilter/',
  'kernel/net/ipv4/netfilter/',
  'kernel/net/ipv6/netfilter/',
  'kernel/net/bridge/',
  'kernel/net/bridge/netfilter/',
  'ipip',
  'tunnel4',
  'ip_tunnel',
  'ip6_tunnel',
  'tunnel6',
  'veth',
  'virtio_pci',
  'virtio_net',
  'virtio_rng',
] as const;

/**
 * Loaded by init at boot. virtio_rng first: without a hardware RNG the kernel's CRNG takes about 10 s of TCG time
 * to initialise, and sshd (OpenSSL's getrandom) blocks until it has. `ipip` and `ip6_tunnel` are among them: loading
 * them creates the fallback devices `tunl0` and `ip6tnl0` in every network namespace, so a host where tula-dsr loads
 * them could never be restored byte for byte (see README.md).
 */
export const PRELOAD_MODULES = [
  'virtio_pci',
  'virtio_rng',
  'virtio_net',
  'veth',
  'bridge',
  'ipip',
  'ip6_tunnel',
  'nf_tables',
  'nft_numgen',
  'nft_hash',
  'nft_fwd_netdev',
  'nft_objref',
] as const;

export interface BaseImage {
  readonly path: string;
  readonly key: string;
  readonly built: boolean;
  readonly bytes: number;
  readonly ms: number;
}

/** /lib → /usr/lib and so on: the image is merged-/usr like Debian 12, so ldd's paths are canonicalised. */
function usrPath(p: string): string {
  return p.replace(/^\/(lib|lib64|bin|sbin)\//, '/usr/$1/');
}

async function hostBinary(name: string): Promise<string | null> {
  const r = await execFile(['sh', '-c', `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin command -v ${name}`]);
  return r.code === 0 && r.stdout.trim().startsWith('/') ? r.stdout.trim() : null;
}

/** The shared libraries of a binary (and the dynamic loader), as `ldd` prints them. */
async function libraries(binary: string): Promise<string[]> {
  const r = await execOk(['ldd', binary]);
  const libs: string[] = [];
  for (const line of r.stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]);
    else if (/not found/.test(line)) throw new Error(`VM lab: ${binary} needs a library the host lacks: ${line.trim()}`);
  }
  return libs;
}

interface Inputs {
  /** image path → host file whose bytes go there */
  readonly files: Map<string, string>;
  readonly binaries: string[];
}

async function collectInputs(pkgs: VmPackages): Promise<Inputs> {
  const files = new Map<string, string>();
  const binaries: string[] = [];
  const add = async (imagePath: string, source: string) => {
    files.set(usrPath(imagePath), source);
    for (const lib of await libraries(source)) files.set(usrPath(lib), realpathSync(lib));
  };
  for (const name of HOST_BINARIES) {
    const found = await hostBinary(name);
    if (!found) {
      const pkg = { ip: 'iproute2', nft: 'nftables', sshd: 'openssh-server', dash: 'dash', flock: 'util-linux', sysctl: 'procps', env: 'coreutils' }[name];
      throw new Error(`VM lab: the host has no ${name}; install ${pkg} (the VM runs the host's own ${name})`);
    }
    binaries.push(usrPath(found));
    await add(found, realpathSync(found));
  }
  for (const name of OPTIONAL_HOST_BINARIES) {
    const found = await hostBinary(name);
    if (found) await add(found, realpathSync(found));
  }
  await add('/usr/bin/socat', pkgs.socat);
  for (const etc of ['/etc/protocols', '/etc/services', '/etc/ethertypes']) if (existsSync(etc)) files.set(etc, etc);
  return { files, binaries };
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Builds (cold) or finds (warm) the base image for these packages and this host's binaries. */
export async function buildBaseImage(pkgs: VmPackages, log: (line: string) => void): Promise<BaseImage> {
  const started = Date.now();
  const inputs = await collectInputs(pkgs);
  const keyHash = createHash('sha256');
  keyHash.update(`${LAYOUT_VERSION}\n${pkgs.debs.join('\n')}\n${BUSYBOX_APPLETS.join(' ')}\n${MODULE_SEEDS.join(' ')}\n${PRELOAD_MODULES.join(' ')}\n`);
  for (const [imagePath, source] of [...inputs.files.entries()].sort()) keyHash.update(`${imagePath} ${sha256(readFileSync(source))}\n`);
  const key = keyHash.digest('hex').slice(0, 16);
  const dir = path.join(cacheDir(), 'images');
  const out = path.join(dir, `base-${key}.cpio`);
  if (existsSync(out)) return { path: out, key, built: false, bytes: readFileSync(out).length, ms: Date.now() - started };

  log(`building the base initramfs (${key})`);
  const a = new CpioArchive();
  for (const d of ['bin', 'sbin', 'lib', 'lib64']) a.symlink(d, `usr/${d}`);
  for (const d of [
    'usr/bin',
    'usr/sbin',
    'usr/lib',
    'usr/lib64',
    'proc',
    'sys',
    'dev',
    'run',
    'var/lib',
    'var/log',
    'etc/ssh',
    'etc/sysctl.d',
    'etc/modules-load.d',
    'srv',
    'mnt',
  ])
    a.dir(d);
  a.dir('tmp', 0o1777).dir('root', 0o700);
  a.chardev('dev/console', 5, 1).chardev('dev/null', 1, 3, 0o666);

  a.file('usr/bin/busybox', readFileSync(pkgs.busybox), 0o755);
  for (const [imagePath, source] of inputs.files) {
    const mode = inputs.binaries.includes(imagePath) || /\/(s?bin)\//.test(imagePath) || /ld-linux/.test(imagePath) ? 0o755 : 0o644;
    a.file(imagePath, readFileSync(source), mode);
  }
  a.symlink('usr/bin/sh', 'dash');
  for (const applet of BUSYBOX_APPLETS) {
    const at = `usr/bin/${applet}`;
    if (!a.has(at) && !a.has(`usr/sbin/${applet}`)) a.symlink(at, 'busybox');
  }

  a.file(
    'etc/passwd',
    'root:x:0:0:root:/root:/bin/sh\nsshd:x:100:65534::/run/sshd:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n',
  );
  a.file('etc/group', 'root:x:0:\nnogroup:x:65534:\n');
  a.file('etc/shadow', 'root:*:19000:0:99999:7:::\nsshd:*:19000:0:99999:7:::\nnobody:*:19000:0:99999:7:::\n', 0o640);
  a.file('etc/nsswitch.conf', 'passwd: files\ngroup: files\nshadow: files\nhosts: files\n');
  a.file('etc/hosts', '127.0.0.1 localhost\n');
  a.file('etc/shells', '/bin/sh\n/usr/bin/dash\n');

  const modules = resolveModules(pkgs.modulesDir, MODULE_SEEDS);
  const modRoot = `usr/lib/modules/${pkgs.kernelVersion}`;
  for (const m of modules) a.file(`${modRoot}/${m.rel}`, readFileSync(path.join(pkgs.modulesDir, m.rel)));
  a.file(`${modRoot}/modules.dep`, renderModulesDep(modules));
  a.file(`${modRoot}/modules.alias`, renderModulesAlias(modules));
  a.file(`${modRoot}/modules.builtin`, readFileSync(path.join(pkgs.modulesDir, 'modules.builtin')));
  const names = new Set(modules.map((m) => m.name));
  const preload = loadOrder(
    modules,
    PRELOAD_MODULES.filter((n) => names.has(n)),
  );
  a.file(`${modRoot}/tula-preload`, preload.map((m) => `${m.rel}\n`).join(''));

  const bytes = a.toBuffer();
  mkdirSync(dir, { recursive: true });
  for (const old of readdirSync(dir)) if (/^base-[0-9a-f]+\.cpio$/.test(old)) rmSync(path.join(dir, old), { force: true });
  const tmp = `${out}.tmp${process.pid}`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, out);
  return { path: out, key, built: true, bytes: bytes.length, ms: Date.now() - started };
}
