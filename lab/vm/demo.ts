/**
 * `npm run demo -- --l3 [--keep]`: the L3 (IPIP) demo in the qemu VM lab. lab/demo.ts loads this file and calls
 * runL3Demo.
 *
 * Boots the VM lab (Debian's cloud kernel under TCG; client, lb, be1 and be2 in their own subnets behind a router),
 * synthesizes an L3 stack against it (web: weighted round robin 1:3 over be1 and be2; dns: UDP), deploys it with
 * the real `terraform init` and `apply` (the provisioners run the tula-dsr agent over SSH), sends traffic from the
 * client and prints how it was balanced and how few bytes crossed the balancer, then runs `terraform destroy` and
 * powers the VM off. `--keep` leaves the VM and the deployment running until Ctrl-C.
 */
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { applySummary, assertFreshBuild, hostProgress } from '../l2/deploy';
import {
  createL3Workspace,
  dsrCounters,
  flushFlows,
  httpBurst,
  L3_WEIGHTS,
  L3Workspace,
  measureByteShare,
  RunResult,
  terraformFailure,
  udpBurst,
} from './deploy';
import { startVmLab, VmLab, VmLabError } from './vm-lab';

export interface L3DemoOptions {
  /** Leave the VM and the deployment running until Ctrl-C. */
  readonly keep: boolean;
  /** Prints one line of the demo's output. */
  readonly log: (line: string) => void;
  /** HTTP requests to the web VIP. @default 100 */
  readonly requests?: number;
}

const UDP_DATAGRAMS = 8;
const SERIAL_TAIL_LINES = 40;

const secs = (ms: number) => `${(ms / 1000).toFixed(1)} s`;
const pct = (x: number) => `${(x * 100).toFixed(1)}%`;

/** Runs the demo; resolves with the process exit code (0: everything worked, 1: it failed, 130: interrupted). */
export async function runL3Demo(o: L3DemoOptions): Promise<number> {
  const out = (line = '') => o.log(line);
  const err = (line: string) => process.stderr.write(`${line}\n`);
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    err('demo: needs root: the VM lab installs qemu and fetches the kernel with apt. Run it as root (sudo npm run demo -- --l3).');
    return 1;
  }
  if (spawnSync('terraform', ['version'], { stdio: 'ignore' }).status !== 0) {
    err('demo: terraform is not on PATH: install Terraform (1.11 is tested) and run the demo again.');
    return 1;
  }
  try {
    assertFreshBuild();
  } catch (e) {
    err(`demo: ${(e as Error).message}`);
    return 1;
  }
  process.stdout.on('error', () => undefined); // a closed pipe (`npm run demo -- --l3 | head`) must not skip the teardown

  const started = Date.now();
  const requests = o.requests ?? 100;
  let lab: VmLab | undefined;
  let ws: L3Workspace | undefined;
  let release: (() => void) | undefined;
  /** Set by a signal: powers the VM off and removes the workspace, then exits with 130. */
  let aborting: Promise<void> | undefined;
  const onSignal = (signal: NodeJS.Signals) => {
    if (release) {
      // --keep is waiting: Ctrl-C ends the wait and the demo powers the VM off as usual
      release();
      release = undefined;
      return;
    }
    if (aborting) return;
    err(`\ndemo: ${signal}: powering the VM off`);
    aborting = Promise.resolve(lab?.stop())
      .catch(() => undefined)
      .then(() => {
        ws?.remove();
        process.exit(130);
      });
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const progress = (line: string) => {
    const p = hostProgress(line);
    if (p !== undefined) out(`    ${p.trimStart()}`);
  };
  const timed = async <T>(label: string, f: () => Promise<T> | T): Promise<T> => {
    const t0 = Date.now();
    const value = await f();
    out(`${label} ... done (${secs(Date.now() - t0)})`);
    return value;
  };
  const terraform = async (what: string, args: string[], onLine?: (line: string) => void): Promise<RunResult> => {
    const r = await ws!.terraform(args, { onLine });
    if (r.code !== 0) throw terraformFailure(what, r);
    return r;
  };

  try {
    out('tula-dsr demo: L3 Direct Server Return (IPIP) in a qemu VM');
    out();
    out("[1/6] VM lab: Debian's cloud kernel under qemu (TCG); client, lb, be1, be2 in their own subnets behind a router, a real sshd each");
    lab = await startVmLab({ log: (line) => out(`      vm-lab: ${line}`), handleSignals: false });
    const inv = lab.inventory;
    out(
      `      client ${inv.client.address}, lb ${inv.balancer.address}, ${inv.backends.map((b) => `${b.name} ${b.address}`).join(', ')}; the router routes ${inv.vipPrefix} to lb`,
    );
    out(
      `      VIPs (mode l3, IPIP to the backends): web ${inv.vips.web}:${inv.ports.http} (weighted round robin ${L3_WEIGHTS.join(':')}), dns ${inv.vips.dns}:${inv.ports.udp}/udp (round robin)`,
    );
    out(
      `      ssh ports on 127.0.0.1: ${[inv.client, inv.balancer, ...inv.backends].map((h) => `${h.name} ${h.sshPort}`).join(', ')}; inventory: ${path.join(lab.workDir, 'inventory.json')}`,
    );

    ws = await timed('[2/6] synthesize the L3 stack (cdktf App in process, terraform_data engine)', () => createL3Workspace(inv));
    out(`      ${ws.stackDir}/cdk.tf.json`);
    await timed('[3/6] terraform init', () => terraform('init', ['init', '-input=false', '-no-color']));
    out('[4/6] terraform apply (each provisioner runs the tula-dsr agent over SSH into the VM)');
    const apply = await terraform('apply', ['apply', '-auto-approve', '-input=false', '-no-color'], progress);
    out(`      ${applySummary(apply.stdout) ?? 'applied'} (${secs(apply.ms)})`);

    out('[5/6] traffic from client');
    const [be1, be2] = inv.backends;
    await flushFlows(lab, 'flows_l3_tcp');
    const t0 = Date.now();
    const burst = await httpBurst(lab, { host: inv.vips.web, port: inv.ports.http, count: requests, parallel: 4 });
    const total = L3_WEIGHTS[0] + L3_WEIGHTS[1];
    out(`      HTTP to web ${inv.vips.web}:${inv.ports.http}, ${requests} requests, a new connection each (${secs(Date.now() - t0)}):`);
    out(`      ${'backend'.padEnd(9)}${'weight'.padStart(6)}${'requests'.padStart(10)}${'share'.padStart(9)}${'expected'.padStart(10)}`);
    [be1, be2].forEach((b, i) => {
      const n = burst.counts[b.name] ?? 0;
      out(
        `      ${b.name.padEnd(9)}${String(L3_WEIGHTS[i]).padStart(6)}${String(n).padStart(10)}${pct(n / requests).padStart(9)}${pct(L3_WEIGHTS[i] / total).padStart(10)}`,
      );
    });
    const stray = Object.entries(burst.counts).filter(([name]) => name !== be1.name && name !== be2.name);
    for (const [name, n] of stray) out(`      ${name.padEnd(9)}${'-'.padStart(6)}${String(n).padStart(10)}`);
    out(`      failed requests: ${burst.failures}${burst.errors.length ? ` (${burst.errors[0]})` : ''}`);

    await flushFlows(lab, 'flows_l3_udp');
    const udp = await udpBurst(lab, { host: inv.vips.dns, port: inv.ports.udp, count: UDP_DATAGRAMS });
    const fmt = (c: Record<string, number>) =>
      Object.entries(c)
        .sort()
        .map(([n, k]) => `${n} ${k}`)
        .join(', ');
    out(`      UDP to dns ${inv.vips.dns}:${inv.ports.udp}, ${UDP_DATAGRAMS} datagrams at once: ${fmt(udp.counts) || 'no answer'}; lost ${udp.failures}`);

    const share = await measureByteShare(lab, { host: inv.vips.web, port: inv.ports.http });
    const mb = (n: number) => `${(n / 1e6).toFixed(2)} MB`;
    out(`      1 MiB download from web (served by ${share.backend ?? '?'}, ${share.bytes} bytes${share.error ? `, ERROR ${share.error}` : ''}):`);
    out(
      `        client eth0 ${mb(share.clientBytes)}, lb eth0 ${(share.balancerBytes / 1e3).toFixed(1)} kB: the balancer carried ${(share.share * 100).toFixed(2)}% of the bytes`,
    );
    out('        (requests and ACKs go through the balancer, in and out again through the tunnel; responses go from the backend straight to the client)');
    const c = await dsrCounters(lab);
    out(
      `      VIP-sourced packets: ${c.balancerIn} in and ${c.balancerOut} out of lb eth0, ${c.routerFromLb} forwarded from lb; ${c.routerFromBackends} forwarded from be1/be2 straight to the client`,
    );

    const problems = [
      burst.failures > 0 && `${burst.failures} failed HTTP request(s)`,
      udp.failures > 0 && `${udp.failures} UDP datagram(s) without an answer`,
      (share.error || share.bytes !== share.expected) && `the 1 MiB download failed (${share.error ?? `${share.bytes} bytes`})`,
      c.balancerIn + c.balancerOut + c.routerFromLb > 0 && 'VIP-sourced packets crossed the balancer',
    ].filter((x): x is string => typeof x === 'string');

    if (o.keep) {
      const ssh = (h: { sshPort: number }) => `ssh -i ${inv.privateKeyPath} -o UserKnownHostsFile=${inv.knownHostsFile} -p ${h.sshPort} root@127.0.0.1`;
      out();
      out('--keep: the VM and the deployment stay up (the VM powers itself off after 30 minutes). Try, in another shell:');
      out(`  ${ssh(inv.client)} wget -q -O - http://${inv.vips.web}/name`);
      out(`  ${ssh(inv.balancer)} nft list table netdev tula_dsr`);
      out(`  ${ssh(be1)} ip -d addr show dev ipip0`);
      out(`  node ${path.relative(process.cwd(), path.join(__dirname, '..', '..', 'agent', 'cli.js'))} check ${ws.stackDir}`);
      out('Ctrl-C powers the VM off.');
      await new Promise<void>((resolve) => {
        release = resolve;
      });
      out();
    } else {
      out('[6/6] terraform destroy (each destroy provisioner runs `tula-dsr remove`)');
      const destroy = await terraform('destroy', ['destroy', '-auto-approve', '-input=false', '-no-color'], progress);
      out(`      ${applySummary(destroy.stdout) ?? 'destroyed'} (${secs(destroy.ms)})`);
    }
    await timed('power off the VM, remove its work folder and the Terraform workspace', async () => {
      await lab!.stop();
      ws!.remove();
    });
    out(`total ${secs(Date.now() - started)}`);
    if (problems.length) {
      err(`\ndemo failed: ${problems.join('; ')}`);
      return 1;
    }
    return 0;
  } catch (error) {
    // terraform and SSH fail when a signal tears the VM down: finish that cleanup first, it exits with 130
    if (aborting) {
      await aborting;
      return 130;
    }
    const message = error instanceof Error ? error.message : String(error);
    // a VmLabError carries the whole serial console: show its tail, not all of it
    const serial = error instanceof VmLabError ? error.serial : lab?.serial();
    err(`\ndemo failed: ${message.split('\n----- serial console -----')[0]}`);
    if (serial) {
      // without the terminal control sequences of the firmware and the kernel's console setup
      // eslint-disable-next-line no-control-regex
      const text = serial.replace(/\x1b(?:\[[0-9;?]*[A-Za-z]|[A-Za-z])/g, '').replace(/\r/g, '');
      const tail = text.trimEnd().split('\n').slice(-SERIAL_TAIL_LINES).join('\n');
      err(`----- VM serial console, last ${SERIAL_TAIL_LINES} lines -----\n${tail}\n----- end of serial console -----`);
    }
    if (lab) await lab.stop({ failed: true, printSerial: false }).catch(() => undefined);
    if (ws) err(`demo: kept the Terraform workspace ${ws.dir} (state and the synthesized stack)`);
    return 1;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}
