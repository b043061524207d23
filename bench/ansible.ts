import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * ansible-core from Debian, plus the ansible.posix collection taken out of Debian's `ansible` package (only the
 * collection, not the 260 MB install) into the benchmark cache.
 */
export function ensureAnsible(cacheDir: string): { collectionsPath: string; version: string } {
  if (spawnOk('ansible-playbook', ['--version']) === false) {
    process.stderr.write('bench: installing ansible-core from Debian\n');
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'ansible-core'], {
      stdio: 'inherit',
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    });
  }
  const collectionsPath = join(cacheDir, 'collections');
  const marker = join(collectionsPath, 'ansible_collections', 'ansible', 'posix', 'plugins', 'modules', 'sysctl.py');
  if (!existsSync(marker)) {
    process.stderr.write('bench: fetching the ansible.posix collection (Debian package ansible, 17 MB)\n');
    const debDir = join(cacheDir, 'deb');
    mkdirSync(debDir, { recursive: true });
    if (!readdirSync(debDir).some((f) => f.startsWith('ansible_'))) execFileSync('apt-get', ['download', 'ansible'], { cwd: debDir, stdio: 'pipe' });
    const deb = readdirSync(debDir).find((f) => f.startsWith('ansible_'))!;
    const staging = join(cacheDir, 'staging');
    mkdirSync(staging, { recursive: true });
    execFileSync('sh', [
      '-c',
      `dpkg-deb --fsys-tarfile "$1" | tar -x -C "$2" ./usr/lib/python3/dist-packages/ansible_collections/ansible/posix`,
      'sh',
      join(debDir, deb),
      staging,
    ]);
    mkdirSync(join(collectionsPath, 'ansible_collections', 'ansible'), { recursive: true });
    execFileSync('mv', [
      join(staging, 'usr/lib/python3/dist-packages/ansible_collections/ansible/posix'),
      join(collectionsPath, 'ansible_collections', 'ansible', 'posix'),
    ]);
  }
  const version = execFileSync('ansible-playbook', ['--version'], { encoding: 'utf8' }).split('\n')[0];
  return { collectionsPath, version };
}

function spawnOk(cmd: string, args: string[]): boolean {
  try {
    execFileSync(cmd, args, { stdio: 'pipe' });
    return true;
  } catch {
    return false;
  }
}

export function renderPlaybook(vip: string, gatherFacts: boolean): string {
  return `- hosts: backends
  gather_facts: ${gatherFacts}
  tasks:
    - name: arp_ignore
      ansible.posix.sysctl:
        name: net.ipv4.conf.all.arp_ignore
        value: '1'
        sysctl_file: /etc/sysctl.d/99-dsr.conf
        sysctl_set: true
        reload: false
    - name: arp_announce
      ansible.posix.sysctl:
        name: net.ipv4.conf.all.arp_announce
        value: '2'
        sysctl_file: /etc/sysctl.d/99-dsr.conf
        sysctl_set: true
        reload: false
    - name: VIP on lo
      ansible.builtin.shell: ip -o addr show dev lo | grep -q ' ${vip}/32' && echo present || ip addr add ${vip}/32 dev lo
      register: vip
      changed_when: "'present' not in vip.stdout"
`;
}

export function renderInventory(hosts: readonly { name: string; ip: string }[], keyPath: string, knownHosts: string): string {
  const lines = [
    '[backends]',
    ...hosts.map((h) => `${h.name} ansible_host=${h.ip}`),
    '',
    '[backends:vars]',
    'ansible_user=root',
    `ansible_ssh_private_key_file=${keyPath}`,
    'ansible_python_interpreter=/usr/bin/python3',
    `ansible_ssh_common_args='-o UserKnownHostsFile=${knownHosts} -o StrictHostKeyChecking=yes'`,
  ];
  return lines.join('\n') + '\n';
}

/** Sums `changed=N` over the PLAY RECAP lines; fails on any failed/unreachable host. */
export function parseAnsibleRecap(output: string): { changed: number; failed: number } {
  let changed = 0;
  let failed = 0;
  for (const m of output.matchAll(/changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)/g)) {
    changed += Number(m[1]);
    failed += Number(m[2]) + Number(m[3]);
  }
  return { changed, failed };
}
