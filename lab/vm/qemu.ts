/**
 * qemu for the VM lab: its command line, and the running process with its serial console (copied to a file and
 * kept in memory), the wait for the guest's READY line, and shutting it down.
 */
import { spawn, ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import * as path from 'node:path';
import { SERIAL_MARKER } from './guest';

export interface QemuArgsInput {
  readonly kernel: string;
  readonly initrd: string;
  readonly memoryMb: number;
  readonly forwards: readonly { readonly port: number; readonly guestIp: string }[];
}

/** The qemu command line: TCG, 2 CPUs, serial console on stdio, user-mode network with forwards. */
export function qemuArgs(i: QemuArgsInput): string[] {
  const hostfwd = i.forwards.map((f) => `hostfwd=tcp:127.0.0.1:${f.port}-${f.guestIp}:22`).join(',');
  return [
    '-accel',
    'tcg',
    '-smp',
    '2',
    '-m',
    String(i.memoryMb),
    '-nographic',
    '-no-reboot',
    // no floppy, CD-ROM, VGA or parallel port to probe at boot
    '-nodefaults',
    '-no-user-config',
    '-serial',
    'stdio',
    '-kernel',
    i.kernel,
    '-initrd',
    i.initrd,
    '-append',
    'console=ttyS0 quiet panic=-1',
    // restrict=on: the guest reaches nothing outside; the forwards still work. ipv6=off: no router
    // advertisements, whose addresses and routes would age and make host snapshots differ
    '-netdev',
    `user,id=n0,restrict=on,ipv6=off,${hostfwd}`,
    // romfile=: no iPXE option ROM to run at boot
    '-device',
    'virtio-net-pci,netdev=n0,romfile=',
    // seeds the kernel's CRNG at once (see PRELOAD_MODULES in initramfs.ts)
    '-device',
    'virtio-rng-pci',
  ];
}

export type BootOutcome = 'ready' | 'failed' | 'exited' | 'timeout';

/** Keeps at most this much of the serial console in memory; the file has all of it. */
const SERIAL_MEMORY_BYTES = 8 << 20;

/** The qemu process of one VM lab run. */
export class QemuProcess {
  private child: ChildProcess | undefined;
  private exited = false;
  private exitWaiters: (() => void)[] = [];
  private serialText = '';

  constructor(readonly serialLogPath: string) {}

  /** The serial console so far (qemu's own messages included). */
  serial(): string {
    return this.serialText;
  }

  /** Started and not exited yet. */
  get running(): boolean {
    return this.child !== undefined && !this.exited;
  }

  /** Starts qemu, under `setpriv --pdeathsig KILL` where there is one: a test process killed with SIGKILL takes qemu with it. */
  async start(qemu: string, args: readonly string[]): Promise<void> {
    const setpriv = await which('setpriv');
    const argv = setpriv ? [setpriv, '--pdeathsig', 'KILL', qemu, ...args] : [qemu, ...args];
    const fd = openSync(this.serialLogPath, 'a');
    const proc = spawn(argv[0], argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child = proc;
    const onData = (b: Buffer) => {
      writeSync(fd, b);
      if (this.serialText.length < SERIAL_MEMORY_BYTES) this.serialText += b.toString('utf8');
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', onData);
    proc.on('error', (e) => onData(Buffer.from(`\n[vm-lab] cannot run qemu: ${e.message}\n`)));
    proc.on('exit', (code, signal) => {
      this.exited = true;
      proc.stdin?.destroy();
      onData(Buffer.from(`\n[vm-lab] qemu exited (${signal ?? code})\n`));
      closeSync(fd);
      const waiters = this.exitWaiters;
      this.exitWaiters = [];
      for (const w of waiters) w();
    });
  }

  /** Resolves once the guest's init printed READY or FAILED, qemu exited, or `timeoutMs` passed. */
  waitForBoot(timeoutMs: number): Promise<BootOutcome> {
    const proc = this.child!;
    return new Promise<BootOutcome>((resolve) => {
      const check = () => {
        if (new RegExp(`${SERIAL_MARKER} READY [0-9.]+\\s`).test(this.serialText)) done('ready');
        else if (new RegExp(`${SERIAL_MARKER} FAILED.*\\n`).test(this.serialText)) done('failed');
        else if (this.exited) done('exited');
      };
      const timer = setTimeout(() => done('timeout'), timeoutMs);
      const done = (r: BootOutcome) => {
        clearTimeout(timer);
        proc.stdout!.off('data', check);
        proc.off('exit', check);
        resolve(r);
      };
      proc.stdout!.on('data', check);
      proc.on('exit', check);
      check();
    });
  }

  /** The guest's uptime in seconds when it printed READY. */
  guestReadySec(): number {
    return Number(new RegExp(`${SERIAL_MARKER} READY ([0-9.]+)`).exec(this.serialText)?.[1] ?? NaN);
  }

  /**
   * Asks the guest to power off (`powerOffGuest`, given up after 2 s), then, if qemu is still there after 3 s each,
   * SIGTERM and SIGKILL.
   */
  async shutDown(powerOffGuest: () => Promise<unknown>): Promise<void> {
    if (!this.running) return;
    await Promise.race([powerOffGuest().catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    if (await this.waitExit(3000)) return;
    this.child!.kill('SIGTERM');
    if (await this.waitExit(3000)) return;
    this.child!.kill('SIGKILL');
    await this.waitExit(3000);
  }

  /** Kills qemu at once (for process exit, where nothing can wait). */
  killNow(): void {
    if (this.running) this.child!.kill('SIGKILL');
  }

  private waitExit(ms: number): Promise<boolean> {
    return new Promise<boolean>((resolve) => {
      if (this.exited) return resolve(true);
      const t = setTimeout(() => resolve(false), ms);
      this.exitWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }
}

async function which(cmd: string): Promise<string | null> {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    const p = path.join(dir, cmd);
    if (dir && existsSync(p)) return p;
  }
  return null;
}
