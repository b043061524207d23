/**
 * The L3 (IPIP) lab: Debian's cloud kernel under qemu with software emulation (TCG), a busybox initramfs carrying
 * the host's own iproute2, nft, sshd and dash, and a routed topology of network namespaces inside (see guest.ts).
 *
 *   const lab = await startVmLab();          // fetch + build (cached) + boot; resolves once every sshd answers
 *   lab.inventory                            // ssh ports on 127.0.0.1, pinned host keys, key path, addresses
 *   await lab.execOk('client', 'wget -q -O - http://10.10.100.1/name');
 *   await lab.stop();                        // powers off, removes the work folder (also on SIGINT/SIGTERM/exit)
 *
 * The serial console is written to <workDir>/serial.log; on failure it is printed and the folder is kept. The qemu
 * process itself (command line, serial console, shutdown) is in qemu.ts.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { connect, RunResult, SshConnection } from '../../agent/ssh/connection';
import type { Inventory, InventoryHost } from '../inventory';
import { generateKeyPair, KeyPair } from '../sshd';
import { CpioArchive } from './cpio';
import { ensureQemu, fetchPackages, VmPackages } from './fetch';
import {
  renderInit,
  VM_BALANCER_INTERFACE,
  VM_BIG_BYTES,
  VM_DATA_PREFIX,
  VM_HOSTS,
  VM_HTTP_PORT,
  VM_UDP_PORT,
  VM_VIP_PREFIX,
  VM_VIP_PREFIX6,
  VM_VIPS,
  VM_VIPS6,
  VmHostDef,
  VmHostName,
  vmSshdConfig,
} from './guest';
import { buildBaseImage } from './initramfs';
import { QemuProcess, qemuArgs } from './qemu';

export interface VmLabHost extends InventoryHost {
  readonly name: VmHostName;
  /** Address of the host's sshd inside the VM (qemu forwards sshPort on 127.0.0.1 to it). */
  readonly mgmtIp: string;
  /** The host key as an OpenSSH public key line (hostKey is its SHA256 fingerprint). */
  readonly hostKeyLine: string;
  /** The host's IPv6 address on its data link (a /64 towards the router). */
  readonly address6: string;
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
  /** The IPv6 stack's VIPs (routed to the balancer as vipPrefix6) and its backends: be1, be2 and be3. */
  readonly vips6: { readonly web: string; readonly dns: string };
  readonly vipPrefix6: string;
  readonly backends6: readonly VmLabHost[];
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
  constructor(
    message: string,
    readonly serial?: string,
  ) {
    super(serial ? `${message}\n----- serial console -----\n${serial.trimEnd()}\n----- end of serial console -----` : message);
    this.name = 'VmLabError';
  }
}

/** `SHA256:…` as `ssh-keygen -lf` prints it, from an OpenSSH public key line. */
export function fingerprint(publicLine: string): string {
  const blob = Buffer.from(publicLine.trim().split(/\s+/)[1] ?? '', 'base64');
  return `SHA256:${createHash('sha256').update(blob).digest('base64').replace(/=+$/, '')}`;
}

/**
 * Builds the image if needed, boots the VM and resolves once every host's sshd has answered. Each step is timed
 * (`lab.timings`). On failure the VM is stopped, the work folder kept, and the error carries the serial console.
 */
export async function startVmLab(options: VmLabOptions = {}): Promise<VmLab> {
  const log = options.log ?? ((line: string) => process.stderr.write(`vm-lab: ${line}\n`));
  const started = Date.now();
  assertRoot();
  const qemu = await ensureQemu(log);
  const packages = await fetchPackages(log);
  const fetched = Date.now();
  const image = await buildBaseImage(packages, log);
  const imaged = Date.now();
  if (image.built) log(`base initramfs built in ${image.ms} ms (${(image.bytes / 1048576).toFixed(1)} MiB): ${image.path}`);

  const lab = new RunningVmLab(mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-vm-')), packages, log);
  lab.cleanUpOnExit(options.handleSignals ?? true);
  try {
    const keys = await generateRunKeys(lab.workDir);
    lab.hosts = await assignHostPorts(keys.hosts);
    const initrd = writeRunInitrd(lab.workDir, image.path, keys, options.lifetimeSec ?? 1800);
    lab.inventory = writeInventory(lab.workDir, keys.client.privatePath, lab.hosts);
    const prepared = Date.now();

    await bootVm(lab, qemu, initrd, options);
    const booted = Date.now();
    const guestReadySec = lab.qemu.guestReadySec();

    await checkHostIdentities(lab);
    const done = Date.now();
    lab.timings = {
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
    log(
      `ready in ${((done - started) / 1000).toFixed(1)} s (boot ${((booted - prepared) / 1000).toFixed(1)} s, guest uptime ${guestReadySec} s); work folder ${lab.workDir}`,
    );
    return lab;
  } catch (error) {
    // the error carries the serial console, so stop() need not print it
    await lab.stop({ failed: true, printSerial: false });
    if (error instanceof VmLabError) throw error;
    throw new VmLabError(`VM lab: ${(error as Error).message}`, lab.serial() || undefined);
  }
}

function assertRoot(): void {
  if (process.getuid?.() !== 0) {
    throw new VmLabError('VM lab: needs root (it installs qemu and fetches packages with apt, like the namespace lab needs root); run the tests as root');
  }
}

/** The lab as startVmLab hands it out: SSH sessions to its hosts, the serial console, and stop(). */
class RunningVmLab implements VmLab {
  inventory = undefined as unknown as VmInventory;
  timings = undefined as unknown as VmTimings;
  hosts: VmLabHost[] = [];
  readonly serialLogPath: string;
  readonly qemu: QemuProcess;
  /** One SSH connection per host, opened on first use and reused. */
  private readonly conns = new Map<VmHostName, Promise<SshConnection>>();
  private stopping: Promise<void> | undefined;

  constructor(
    readonly workDir: string,
    readonly packages: VmPackages,
    private readonly log: (line: string) => void,
  ) {
    this.serialLogPath = path.join(workDir, 'serial.log');
    this.qemu = new QemuProcess(this.serialLogPath);
  }

  /**
   * However the process ends, qemu must not outlive it: kill qemu on exit (and remove the work folder unless stop()
   * is deciding about it). On SIGINT or SIGTERM, power the VM off first, then re-raise the signal.
   */
  cleanUpOnExit(handleSignals: boolean): void {
    process.on('exit', this.onExit);
    if (handleSignals) {
      process.on('SIGINT', this.onSignal);
      process.on('SIGTERM', this.onSignal);
    }
  }

  private readonly onExit = () => {
    this.qemu.killNow();
    if (!this.stopping) rmSync(this.workDir, { recursive: true, force: true });
  };

  private readonly onSignal = (signal: NodeJS.Signals) => {
    this.log(`${signal}: powering the VM off`);
    void this.stop().finally(() => {
      process.removeListener('SIGINT', this.onSignal);
      process.removeListener('SIGTERM', this.onSignal);
      process.kill(process.pid, signal);
    });
  };

  host = (name: VmHostName): VmLabHost => this.hosts.find((h) => h.name === name)!;

  exec = async (name: VmHostName, script: string, opts?: { stdin?: string | Buffer }): Promise<RunResult> => {
    let c = this.conns.get(name);
    if (!c) {
      const h = this.host(name);
      c = connect(
        { host: h.sshHost, port: h.sshPort, user: 'root', privateKeyPath: this.inventory.privateKeyPath, hostKey: h.hostKey },
        { timeoutMs: 30_000, retries: 3 },
      );
      this.conns.set(name, c);
      c.catch(() => this.conns.delete(name));
    }
    const conn = await c;
    if (!conn.open) {
      this.conns.delete(name);
      return this.exec(name, script, opts);
    }
    return conn.run(script, opts?.stdin !== undefined ? { stdin: opts.stdin } : {});
  };

  execOk = async (name: VmHostName, script: string, opts?: { stdin?: string | Buffer }): Promise<string> => {
    const r = await this.exec(name, script, opts);
    if (r.code !== 0) {
      throw new Error(
        `VM lab: on ${name}, the script exited with ${r.code}:\n${script.trim()}\n--- stdout ---\n${r.stdout.trimEnd()}\n--- stderr ---\n${r.stderr.trimEnd()}`,
      );
    }
    return r.stdout;
  };

  serial = (): string => this.qemu.serial();

  stop = (opts: StopOptions = {}): Promise<void> => {
    this.stopping ??= (async () => {
      process.removeListener('exit', this.onExit);
      process.removeListener('SIGINT', this.onSignal);
      process.removeListener('SIGTERM', this.onSignal);
      // ask the VM to power off; the connection drops when it does
      const router = this.conns.get('router');
      await this.qemu.shutDown(async () => {
        if (router) await router.then((c) => (c.open ? c.run('poweroff -f') : undefined));
      });
      await Promise.all([...this.conns.values()].map((c) => c.then((x) => x.close()).catch(() => undefined)));
      this.conns.clear();
      this.keepOrRemoveWorkDir(opts);
    })();
    return this.stopping;
  };

  private keepOrRemoveWorkDir(opts: StopOptions): void {
    const { workDir, serialLogPath } = this;
    // a kept folder keeps the logs, keys and inventory, not the 30 MB image
    rmSync(path.join(workDir, 'initrd.cpio'), { force: true });
    if (opts.failed && (opts.printSerial ?? true)) {
      process.stderr.write(`vm-lab: serial console (${serialLogPath}, kept with the whole work folder ${workDir}):\n${this.serial()}\n`);
    } else if (opts.failed) {
      process.stderr.write(`vm-lab: kept the work folder ${workDir}\n`);
    } else {
      rmSync(workDir, { recursive: true, force: true });
    }
  }
}

/** Fresh keys for every run: one client key, and one host key per host (in VM_HOSTS order). */
interface RunKeys {
  readonly client: KeyPair;
  readonly hosts: readonly { readonly def: VmHostDef; readonly key: KeyPair }[];
}

async function generateRunKeys(workDir: string): Promise<RunKeys> {
  const [client, ...hostKeys] = await Promise.all([
    generateKeyPair(path.join(workDir, 'id_ed25519'), 'tula-dsr-vm-lab'),
    ...VM_HOSTS.map((h) => generateKeyPair(path.join(workDir, `host-${h.name}`), `${h.name}@tula-dsr-vm-lab`)),
  ]);
  return { client, hosts: VM_HOSTS.map((def, i) => ({ def, key: hostKeys[i] })) };
}

/** A free port on 127.0.0.1 per host: qemu forwards it to the host's sshd inside the VM. */
async function assignHostPorts(hosts: RunKeys['hosts']): Promise<VmLabHost[]> {
  const ports = await Promise.all(hosts.map(() => freePort()));
  return hosts.map((h, i) => hostEntry(h.def, ports[i], h.key));
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

function hostEntry(h: VmHostDef, port: number, key: KeyPair): VmLabHost {
  return {
    name: h.name,
    sshHost: '127.0.0.1',
    sshPort: port,
    address: h.address,
    address6: h.address6,
    hostKey: fingerprint(key.publicLine),
    hostKeyLine: key.publicLine,
    mgmtIp: h.mgmtIp,
  };
}

/**
 * Writes this run's initrd: the cached base image with a small cpio appended (the kernel unpacks both) holding
 * `/init`, the keys and each host's sshd config. Returns its path.
 */
function writeRunInitrd(workDir: string, baseImage: string, keys: RunKeys, lifetimeSec: number): string {
  const run = new CpioArchive().file('init', renderInit({ lifetimeSec }), 0o755).file('lab/authorized_keys', `${keys.client.publicLine}\n`, 0o600);
  for (const { def, key } of keys.hosts) {
    run.file(`lab/hosts/${def.name}/ssh_host_ed25519_key`, key.privateKey, 0o600);
    run.file(`lab/hosts/${def.name}/ssh_host_ed25519_key.pub`, `${key.publicLine}\n`);
    run.file(`lab/hosts/${def.name}/sshd_config`, vmSshdConfig(def));
  }
  const initrd = path.join(workDir, 'initrd.cpio');
  writeFileSync(initrd, Buffer.concat([readFileSync(baseImage), run.toBuffer()]));
  return initrd;
}

/** Writes known_hosts and inventory.json into the work folder (kept after a failed run) and returns the inventory. */
function writeInventory(workDir: string, privateKeyPath: string, hosts: readonly VmLabHost[]): VmInventory {
  const knownHostsFile = path.join(workDir, 'known_hosts');
  writeFileSync(knownHostsFile, hosts.map((h) => `[127.0.0.1]:${h.sshPort} ${h.hostKeyLine.split(/\s+/).slice(0, 2).join(' ')}\n`).join(''));
  const byName = (n: VmHostName) => hosts.find((h) => h.name === n)!;
  const inventory: VmInventory = {
    kind: 'vm',
    user: 'root',
    privateKeyPath,
    knownHostsFile,
    balancer: { ...byName('lb'), interface: VM_BALANCER_INTERFACE, subnet: `${byName('lb').address.replace(/\.\d+$/, '.0')}/${VM_DATA_PREFIX}` },
    backends: [byName('be1'), byName('be2')],
    client: byName('client'),
    router: byName('router'),
    vips: { ...VM_VIPS },
    vipPrefix: VM_VIP_PREFIX,
    vips6: { ...VM_VIPS6 },
    vipPrefix6: VM_VIP_PREFIX6,
    backends6: [byName('be1'), byName('be2'), byName('be3')],
    ports: { http: VM_HTTP_PORT, udp: VM_UDP_PORT },
    bigBytes: VM_BIG_BYTES,
  };
  writeFileSync(path.join(workDir, 'inventory.json'), JSON.stringify(inventory, null, 2) + '\n');
  return inventory;
}

/** Starts qemu and waits until the guest's init reports every sshd listening. */
async function bootVm(lab: RunningVmLab, qemu: string, initrd: string, options: VmLabOptions): Promise<void> {
  const forwards = lab.hosts.map((h) => ({ port: h.sshPort, guestIp: h.mgmtIp }));
  await lab.qemu.start(qemu, qemuArgs({ kernel: lab.packages.vmlinuz, initrd, memoryMb: options.memoryMb ?? 1024, forwards }));
  const bootTimeout = options.bootTimeoutMs ?? 120_000;
  const outcome = await lab.qemu.waitForBoot(bootTimeout);
  if (outcome !== 'ready') {
    const why = { failed: 'the VM init failed', exited: 'qemu exited before the VM was ready', timeout: `the VM was not ready after ${bootTimeout / 1000} s` }[
      outcome
    ];
    throw new VmLabError(`VM lab: ${why} (serial console: ${lab.serialLogPath})`, lab.serial());
  }
}

/** One login per host: the pinned host keys are verified, and each forwarded port reaches the host it claims. */
async function checkHostIdentities(lab: RunningVmLab): Promise<void> {
  const names = await Promise.all(lab.hosts.map((h) => lab.execOk(h.name, 'hostname')));
  names.forEach((n, i) => {
    if (n.trim() !== lab.hosts[i].name)
      throw new VmLabError(`VM lab: port ${lab.hosts[i].sshPort} reached host ${n.trim()}, expected ${lab.hosts[i].name}`, lab.serial());
  });
}
