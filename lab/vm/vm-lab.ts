/**
 * The L3 (IPIP) lab: Debian's cloud kernel under qemu with software emulation (TCG), a busybox initramfs carrying
 * the host's own iproute2, nft, sshd and dash, and a routed topology of network namespaces inside (see guest.ts).
 *
 *   const lab = await startVmLab();          // fetch + build (cached) + boot; resolves once every sshd answers
 *   lab.inventory                            // ssh ports on 127.0.0.1, pinned host keys, key path, addresses
 *   await lab.execOk('client', 'wget -q -O - http://10.10.100.1/name');
 *   await lab.stop();                        // powers off, removes the work folder (also on SIGINT/SIGTERM/exit)
 *
 * The serial console is written to <workDir>/serial.log; on failure it is printed and the folder is kept.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, RunResult, SshConnection } from '../../agent/ssh/connection';
import type { Inventory, InventoryHost } from '../inventory';
import { generateKeyPair, KeyPair } from '../sshd';
import { CpioArchive } from './cpio';
import { ensureQemu, fetchPackages, VmPackages } from './fetch';
import {
  renderInit, SERIAL_MARKER, VM_BALANCER_INTERFACE, VM_BIG_BYTES, VM_DATA_PREFIX, VM_HOSTS, VM_HTTP_PORT, VM_UDP_PORT, VM_VIP_PREFIX, VM_VIPS,
  VmHostDef, VmHostName, vmSshdConfig,
} from './guest';
import { buildBaseImage } from './initramfs';

export interface VmLabHost extends InventoryHost {
  readonly name: VmHostName;
  /** Address of the host's sshd inside the VM (qemu forwards sshPort on 127.0.0.1 to it). */
  readonly mgmtIp: string;
  /** The host key as an OpenSSH public key line (hostKey is its SHA256 fingerprint). */
  readonly hostKeyLine: string;
}

/** The same shape as the namespace lab's inventory, plus what the VM adds. */
export interface VmInventory extends Inventory {
  readonly kind: 'vm';
  readonly user: 'root';
  readonly privateKeyPath: string;
  /** known_hosts lines for every host (`[127.0.0.1]:port ssh-ed25519 …`), for `ssh -o UserKnownHostsFile=`. */
  readonly knownHostsFile: string;
  readonly balancer: VmLabHost & { readonly interface: string; readonly subnet: string };
  readonly backends: readonly VmLabHost[];
  readonly client: VmLabHost;
  readonly router: VmLabHost;
  readonly vipPrefix: string;
  readonly ports: { readonly http: number; readonly udp: number };
  /** Size of each backend's /big download. */
  readonly bigBytes: number;
}

export interface VmTimings {
  /** qemu check and packages (apt on a cold run). */
  fetchMs: number;
  /** Base initramfs (a cache lookup when warm). */
  imageMs: number;
  imageBuilt: boolean;
  imageBytes: number;
  /** Keys, per-run archive, free ports. */
  prepareMs: number;
  /** qemu start until init printed READY (every sshd listening). */
  bootMs: number;
  /** The guest's uptime when it printed READY. */
  guestReadySec: number;
  /** One SSH login per host, in parallel (verifies pinned keys and each host's identity). */
  sshMs: number;
  totalMs: number;
}

export interface VmLabOptions {
  /** Progress lines; default: stderr with a `vm-lab:` prefix. */
  readonly log?: (line: string) => void;
  /** @default 1024 */
  readonly memoryMb?: number;
  /** The VM powers itself off after this long, whatever the host does. @default 1800 */
  readonly lifetimeSec?: number;
  /** Time allowed from qemu start to READY. @default 120 000 */
  readonly bootTimeoutMs?: number;
  /**
   * On SIGINT or SIGTERM, power the VM off and re-raise the signal. Pass false when the caller handles the signals
   * itself (and calls stop()); qemu is still killed when the process exits. @default true
   */
  readonly handleSignals?: boolean;
}

export interface StopOptions {
  /** Keep the work folder (serial log, keys, inventory) and print the serial console: for a failed run. */
  readonly failed?: boolean;
  /** @default failed */
  readonly printSerial?: boolean;
}

export interface VmLab {
  readonly inventory: VmInventory;
  readonly workDir: string;
  readonly serialLogPath: string;
  readonly timings: VmTimings;
  readonly packages: VmPackages;
  host(name: VmHostName): VmLabHost;
  /** Runs a POSIX sh script on a lab host over SSH; a non-zero exit is a result. */
  exec(name: VmHostName, script: string, opts?: { stdin?: string | Buffer }): Promise<RunResult>;
  /** Like exec, but throws (with stdout and stderr) on a non-zero exit, and returns stdout. */
  execOk(name: VmHostName, script: string, opts?: { stdin?: string | Buffer }): Promise<string>;
  /** The serial console so far. */
  serial(): string;
  stop(opts?: StopOptions): Promise<void>;
}

export class VmLabError extends Error {
  constructor(message: string, readonly serial?: string) {
    super(serial ? `${message}\n----- serial console -----\n${serial.trimEnd()}\n----- end of serial console -----` : message);
    this.name = 'VmLabError';
  }
}

/** `SHA256:…` as `ssh-keygen -lf` prints it, from an OpenSSH public key line. */
export function fingerprint(publicLine: string): string {
  const blob = Buffer.from(publicLine.trim().split(/\s+/)[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface QemuArgsInput {
  readonly kernel: string;
  readonly initrd: string;
  readonly memoryMb: number;
  readonly forwards: readonly { readonly port: number; readonly guestIp: string }[];
}

/** The qemu command line (DESIGN.md §6): TCG, 2 CPUs, serial console on stdio, user-mode network with forwards. */
export function qemuArgs(i: QemuArgsInput): string[] {
  const hostfwd = i.forwards.map((f) => `hostfwd=tcp:127.0.0.1:${f.port}-${f.guestIp}:22`).join(',');
  return [
    '-accel', 'tcg',
    '-smp', '2',
    '-m', String(i.memoryMb),
    '-nographic',
    '-no-reboot',
    // no floppy, CD-ROM, VGA or parallel port to probe at boot
    '-nodefaults', '-no-user-config', '-serial', 'stdio',
    '-kernel', i.kernel,
    '-initrd', i.initrd,
    '-append', 'console=ttyS0 quiet panic=-1',
    // restrict=on: the guest reaches nothing outside; the forwards still work. ipv6=off: no router
    // advertisements, whose addresses and routes would age and make host snapshots differ
    '-netdev', `user,id=n0,restrict=on,ipv6=off,${hostfwd}`,
    // romfile=: no iPXE option ROM to run at boot
    '-device', 'virtio-net-pci,netdev=n0,romfile=',
    // seeds the kernel's CRNG at once (see PRELOAD_MODULES)
    '-device', 'virtio-rng-pci',
  ];
}

async function which(cmd: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return null;
}

/** Builds the image if needed, boots the VM and resolves once every host's sshd has answered. */
export async function startVmLab(options: VmLabOptions = {}): Promise<VmLab> {
  const log = options.log ?? ((line: string) => process.stderr.write(`vm-lab: ${line}\n`));
  const started = Date.now();
  if (process.getuid?.() !== 0) {
    throw new VmLabError('VM lab: needs root (it installs qemu and fetches packages with apt, like the namespace lab needs root); run the tests as root');
  }
  const qemu = await ensureQemu(log);
  const packages = await fetchPackages(log);
  const fetched = Date.now();
  const image = await buildBaseImage(packages, log);
  const imaged = Date.now();
  if (image.built) log(`base initramfs built in ${image.ms} ms (${(image.bytes / 1048576).toFixed(1)} MiB): ${image.path}`);

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-vm-'));
  const serialLogPath = path.join(workDir, 'serial.log');
  let serialText = '';
  let child: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;
  const conns = new Map<VmHostName, Promise<SshConnection>>();
  let exited = false;

  const killNow = () => {
    if (child && !exited) child.kill('SIGKILL');
  };
  const onExit = () => {
    killNow();
    if (!stopping) rmSync(workDir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    log(`${signal}: powering the VM off`);
    void lab.stop().finally(() => {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
      process.kill(process.pid, signal);
    });
  };
  process.on('exit', onExit);
  if (options.handleSignals ?? true) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }

  const lab: VmLab = {
    inventory: undefined as unknown as VmInventory,
    workDir,
    serialLogPath,
    timings: undefined as unknown as VmTimings,
    packages,
    host: (name) => allHosts.find((h) => h.name === name)!,
    exec: async (name, script, opts) => {
      let c = conns.get(name);
      if (!c) {
        const h = lab.host(name);
        c = connect({ host: h.sshHost, port: h.sshPort, user: 'root', privateKeyPath: keyPath, hostKey: h.hostKey }, { timeoutMs: 30_000, retries: 3 });
        conns.set(name, c);
        c.catch(() => conns.delete(name));
      }
      const conn = await c;
      if (!conn.open) {
        conns.delete(name);
        return lab.exec(name, script, opts);
      }
      return conn.run(script, opts?.stdin !== undefined ? { stdin: opts.stdin } : {});
    },
    execOk: async (name, script, opts) => {
      const r = await lab.exec(name, script, opts);
      if (r.code !== 0) {
        throw new Error(`VM lab: on ${name}, the script exited with ${r.code}:\n${script.trim()}\n--- stdout ---\n${r.stdout.trimEnd()}\n--- stderr ---\n${r.stderr.trimEnd()}`);
      }
      return r.stdout;
    },
    serial: () => serialText,
    stop: (opts = {}) => {
      stopping ??= (async () => {
        process.removeListener('exit', onExit);
        process.removeListener('SIGINT', onSignal);
        process.removeListener('SIGTERM', onSignal);
        if (child && !exited) {
          // ask the VM to power off; the connection drops when it does
          const router = conns.get('router');
          if (router) {
            await Promise.race([
              router.then((c) => (c.open ? c.run('poweroff -f') : undefined)).catch(() => undefined),
              new Promise((r) => setTimeout(r, 2000).unref()),
            ]);
          }
          const gone = await waitExit(3000);
          if (!gone) {
            child.kill('SIGTERM');
            if (!(await waitExit(3000))) {
              child.kill('SIGKILL');
              await waitExit(3000);
            }
          }
        }
        await Promise.all([...conns.values()].map((c) => c.then((x) => x.close()).catch(() => undefined)));
        conns.clear();
        // a kept folder keeps the logs, keys and inventory, not the 30 MB image
        rmSync(path.join(workDir, 'initrd.cpio'), { force: true });
        if (opts.failed && (opts.printSerial ?? true)) {
          process.stderr.write(`vm-lab: serial console (${serialLogPath}, kept with the whole work folder ${workDir}):\n${serialText}\n`);
        } else if (opts.failed) {
          process.stderr.write(`vm-lab: kept the work folder ${workDir}\n`);
        } else {
          rmSync(workDir, { recursive: true, force: true });
        }
      })();
      return stopping;
    },
  };
  let exitWaiters: (() => void)[] = [];
  const waitExit = (ms: number) =>
    new Promise<boolean>((resolve) => {
      if (exited) return resolve(true);
      const t = setTimeout(() => resolve(false), ms);
      exitWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });

  let keyPath = '';
  let allHosts: VmLabHost[] = [];
  try {
    // keys: one client key, one host key per host, fresh for every run
    keyPath = path.join(workDir, 'id_ed25519');
    const [clientKey, ...hostKeys] = await Promise.all([
      generateKeyPair(keyPath, 'tula-dsr-vm-lab'),
      ...VM_HOSTS.map((h) => generateKeyPair(path.join(workDir, `host-${h.name}`), `${h.name}@tula-dsr-vm-lab`)),
    ]);
    const ports = await Promise.all(VM_HOSTS.map(() => freePort()));
    allHosts = VM_HOSTS.map((h, i) => hostEntry(h, ports[i], hostKeys[i]));
    const run = new CpioArchive()
      .file('init', renderInit({ lifetimeSec: options.lifetimeSec ?? 1800 }), 0o755)
      .file('lab/authorized_keys', `${clientKey.publicLine}\n`, 0o600);
    VM_HOSTS.forEach((h, i) => {
      run.file(`lab/hosts/${h.name}/ssh_host_ed25519_key`, hostKeys[i].privateKey, 0o600);
      run.file(`lab/hosts/${h.name}/ssh_host_ed25519_key.pub`, `${hostKeys[i].publicLine}\n`);
      run.file(`lab/hosts/${h.name}/sshd_config`, vmSshdConfig(h));
    });
    const initrd = path.join(workDir, 'initrd.cpio');
    writeFileSync(initrd, Buffer.concat([readFileSync(image.path), run.toBuffer()]));
    const knownHostsFile = path.join(workDir, 'known_hosts');
    writeFileSync(knownHostsFile, allHosts.map((h) => `[127.0.0.1]:${h.sshPort} ${h.hostKeyLine.split(/\s+/).slice(0, 2).join(' ')}\n`).join(''));
    const byName = (n: VmHostName) => allHosts.find((h) => h.name === n)!;
    const inventory: VmInventory = {
      kind: 'vm',
      user: 'root',
      privateKeyPath: keyPath,
      knownHostsFile,
      balancer: { ...byName('lb'), interface: VM_BALANCER_INTERFACE, subnet: `${byName('lb').address.replace(/\.\d+$/, '.0')}/${VM_DATA_PREFIX}` },
      backends: [byName('be1'), byName('be2')],
      client: byName('client'),
      router: byName('router'),
      vips: { ...VM_VIPS },
      vipPrefix: VM_VIP_PREFIX,
      ports: { http: VM_HTTP_PORT, udp: VM_UDP_PORT },
      bigBytes: VM_BIG_BYTES,
    };
    writeFileSync(path.join(workDir, 'inventory.json'), JSON.stringify(inventory, null, 2) + '\n');
    (lab as { inventory: VmInventory }).inventory = inventory;
    const prepared = Date.now();

    // boot
    const args = qemuArgs({ kernel: packages.vmlinuz, initrd, memoryMb: options.memoryMb ?? 1024, forwards: allHosts.map((h) => ({ port: h.sshPort, guestIp: h.mgmtIp })) });
    const setpriv = await which('setpriv');
    // PDEATHSIG: a test process killed with SIGKILL takes qemu with it
    const argv = setpriv ? [setpriv, '--pdeathsig', 'KILL', qemu, ...args] : [qemu, ...args];
    const fd = openSync(serialLogPath, 'a');
    child = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const proc = child;
    const onData = (b: Buffer) => {
      writeSync(fd, b);
      if (serialText.length < 8 << 20) serialText += b.toString('utf8');
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('error', (e) => onData(Buffer.from(`\n[vm-lab] cannot run qemu: ${e.message}\n`)));
    proc.on('exit', (code, signal) => {
      exited = true;
      proc.stdin?.destroy();
      onData(Buffer.from(`\n[vm-lab] qemu exited (${signal ?? code})\n`));
      closeSync(fd);
      const waiters = exitWaiters;
      exitWaiters = [];
      for (const w of waiters) w();
    });
    const bootTimeout = options.bootTimeoutMs ?? 120_000;
    const outcome = await new Promise<'ready' | 'failed' | 'exited' | 'timeout'>((resolve) => {
      const check = () => {
        if (new RegExp(`${SERIAL_MARKER} READY [0-9.]+\\s`).test(serialText)) done('ready');
        else if (new RegExp(`${SERIAL_MARKER} FAILED.*\\n`).test(serialText)) done('failed');
        else if (exited) done('exited');
      };
      const timer = setTimeout(() => done('timeout'), bootTimeout);
      const done = (r: 'ready' | 'failed' | 'exited' | 'timeout') => {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        proc.off('exit', check);
        resolve(r);
      };
      proc.stdout!.on('data', check);
      proc.on('exit', check);
      check();
    });
    if (outcome !== 'ready') {
      const why = { failed: 'the VM init failed', exited: 'qemu exited before the VM was ready', timeout: `the VM was not ready after ${bootTimeout / 1000} s` }[outcome];
      throw new VmLabError(`VM lab: ${why} (serial console: ${serialLogPath})`, serialText);
    }
    const booted = Date.now();
    const guestReadySec = Number(new RegExp(`${SERIAL_MARKER} READY ([0-9.]+)`).exec(serialText)?.[1] ?? NaN);

    // one login per host: pinned keys verified, and each host is who it claims to be
    const names = await Promise.all(allHosts.map((h) => lab.execOk(h.name, 'hostname')));
    names.forEach((n, i) => {
      if (n.trim() !== allHosts[i].name) throw new VmLabError(`VM lab: port ${allHosts[i].sshPort} reached host ${n.trim()}, expected ${allHosts[i].name}`, serialText);
    });
    const done = Date.now();
    (lab as { timings: VmTimings }).timings = {
      fetchMs: fetched - started,
      imageMs: imaged - fetched,
      imageBuilt: image.built,
      imageBytes: image.bytes,
      prepareMs: prepared - imaged,
      bootMs: booted - prepared,
      guestReadySec,
      sshMs: done - booted,
      totalMs: done - started,
    };
    log(`ready in ${((done - started) / 1000).toFixed(1)} s (boot ${((booted - prepared) / 1000).toFixed(1)} s, guest uptime ${guestReadySec} s); work folder ${workDir}`);
    return lab;
  } catch (error) {
    // the error carries the serial console
    await lab.stop({ failed: true, printSerial: false });
    if (error instanceof VmLabError) throw error;
    throw new VmLabError(`VM lab: ${(error as Error).message}`, serialText || undefined);
  }
}

function hostEntry(h: VmHostDef, port: number, key: KeyPair): VmLabHost {
  return {
    name: h.name,
    sshHost: '127.0.0.1',
    sshPort: port,
    address: h.address,
    hostKey: fingerprint(key.publicLine),
    hostKeyLine: key.publicLine,
    mgmtIp: h.mgmtIp,
  };
}
