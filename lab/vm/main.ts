#!/usr/bin/env node
/**
 * `node dist/lab/vm/main.js [--keep]`: boots the VM lab, prints its inventory and timings, and powers it off
 * (with --keep: waits for Ctrl-C, so that you can ssh in: see the printed ssh command).
 */
import { startVmLab } from './vm-lab';

async function main(): Promise<number> {
  const keep = process.argv.includes('--keep');
  const lab = await startVmLab();
  try {
    process.stdout.write(`${JSON.stringify({ inventory: lab.inventory, timings: lab.timings }, null, 2)}\n`);
    const inv = lab.inventory;
    process.stdout.write(`ssh: ssh -i ${inv.privateKeyPath} -o UserKnownHostsFile=${inv.knownHostsFile} -p ${inv.client.sshPort} root@127.0.0.1\n`);
    if (keep) {
      process.stdout.write('VM running; Ctrl-C powers it off\n');
      await new Promise(() => undefined);
    }
  } finally {
    await lab.stop();
  }
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
