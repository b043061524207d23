/**
 * Host keys, authentication, reachability and sudo, through the real CLI (`node dist/agent/cli.js`) as
 * Terraform's provisioner runs it. Each refusal: exit code 1, a one-paragraph message on stdout with the fix,
 * no stack trace, and nothing run on the host. The runs are started together in beforeAll (they are independent)
 * and each test awaits its own.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, Lab, LabHost } from '../../lab/topology';
import { execOk } from '../../lab/exec';
import { CliResult, assertDistFresh, backendSpec, runCli, sh, unusedIp, writeSpec, expectNoStackTrace } from './helpers';

jest.setTimeout(30_000);

const VIP = '10.99.5.10';
const BAD_VIP = '10.99.5.300';

let lab: Lab;
let be1: LabHost;
let be2: LabHost;
let down: LabHost;
let walled: LabHost;
const runs = new Map<string, Promise<CliResult>>();

/** `apply --spec` of be1's backend spec with the ssh block changed. */
function applyWith(host: LabHost, ssh: Record<string, unknown>, timeout = '1'): Promise<CliResult> {
  const spec = backendSpec(lab, host, [{ ip: VIP }], { ssh });
  return runCli(['apply', '--spec', writeSpec(lab, spec), '--timeout', timeout]);
}

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({
    hosts: [
      { name: 'be1' },
      { name: 'be2' },
      { name: 'down' },
      { name: 'walled' },
      { name: 'sudoer', users: [{ name: 'tulaops', sudo: true }] },
      { name: 'nosudo', users: [{ name: 'tulanosudo', sudo: false }] },
    ],
  });
  ({ be1, be2, down, walled } = lab.hosts);
  await execOk(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'stranger', '-f', join(lab.dir, 'stranger_ed25519')]);
  writeFileSync(join(lab.dir, 'known_hosts_mismatch'), `${be1.ip} ${be2.hostKeyLine}\n`);
  writeFileSync(join(lab.dir, 'known_hosts_other'), `${be2.ip} ${be2.hostKeyLine}\n`);
  await down.stopSshd();
  // a host that silently drops SSH: the connect can only time out
  await sh(
    walled,
    'nft add table inet wall && nft add chain inet wall input "{ type filter hook input priority 0; policy accept; }" && nft add rule inet wall input tcp dport 22 drop',
  );

  runs.set('wrong pin', applyWith(be1, { hostKey: be2.hostKeyFingerprint }));
  runs.set('known_hosts mismatch', applyWith(be1, { hostKey: undefined, knownHostsFile: join(lab.dir, 'known_hosts_mismatch') }));
  runs.set('known_hosts unknown', applyWith(be1, { hostKey: undefined, knownHostsFile: join(lab.dir, 'known_hosts_other') }));
  runs.set('wrong key', applyWith(be1, { privateKeyPath: join(lab.dir, 'stranger_ed25519') }));
  runs.set('wrong user', applyWith(be1, { user: 'nobodyhere' }));
  runs.set('sshd stopped', applyWith(down, {}));
  runs.set('unused ip', applyWith(be1, { host: unusedIp(lab, 202) }));
  runs.set('dropped', applyWith(walled, {}));
  runs.set('no sudo rights', applyWith(lab.hosts.nosudo, { user: 'tulanosudo' }));
  // the agent starts connecting while it validates the spec: a spec it then refuses must not wait for that connection
  runs.set('bad spec, dropped host', runCli(['apply', '--spec', writeSpec(lab, backendSpec(lab, walled, [{ ip: BAD_VIP }]))]));
  runs.set('bad spec, reachable host', runCli(['apply', '--spec', writeSpec(lab, backendSpec(lab, be2, [{ ip: BAD_VIP }]))]));
  // every run is awaited by its test; none may reject
  for (const p of runs.values()) p.catch(() => undefined);
});

afterAll(async () => {
  await Promise.allSettled(runs.values());
  await lab?.teardown();
});

/** The one `failed:` line of a refused run; asserts the shape every refusal shares. */
function refusal(r: CliResult, host = 'be1'): string {
  expect(r.code).toBe(1);
  expectNoStackTrace(r.stdout + r.stderr);
  expect(r.stderr).not.toMatch(/error/i);
  const failed = r.stdout.split('\n').filter((l) => l.startsWith('failed: '));
  expect(failed).toHaveLength(1);
  expect(r.stdout).toMatch(new RegExp(`^${host} +: ok=0 changed=0 failed=1 skipped=0 `, 'm'));
  return failed[0];
}

/** The agent's own time for the host (from the recap): node's start-up on a loaded machine is not part of it. */
function agentMs(r: CliResult): number {
  const m = /\((\d+) ms, \d+ round trips\)$/m.exec(r.stdout);
  if (!m) throw new Error(`no recap in:\n${r.stdout}`);
  return Number(m[1]);
}

async function nothingRanOn(host: LabHost): Promise<void> {
  expect(await sh(host, 'ls -A /var/lib/tula-dsr /etc/tula-dsr 2>&1 || true')).toMatch(/No such file or directory[\s\S]*No such file or directory/);
  expect(await sh(host, 'sysctl -n net.ipv4.conf.all.arp_ignore')).toBe('0\n');
}

describe('host keys: fail closed', () => {
  test('GIVEN a wrong pinned fingerprint WHEN apply runs THEN it is refused, showing the offered fingerprint and how to pin it', async () => {
    const line = refusal(await runs.get('wrong pin')!);
    expect(line).toBe(
      `failed: be1 root@${be1.ip}:22: host key mismatch for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
        `but hostKey pins ${be2.hostKeyFingerprint}. The host was reinstalled or someone is intercepting the connection. ` +
        `If the new key is expected, pin it: hostKey: '${be1.hostKeyFingerprint}'`,
    );
    await nothingRanOn(be1);
  });

  test('GIVEN known_hosts with another key for the host WHEN apply runs THEN it is refused as a mismatch', async () => {
    const file = join(lab.dir, 'known_hosts_mismatch');
    expect(refusal(await runs.get('known_hosts mismatch')!)).toBe(
      `failed: be1 root@${be1.ip}:22: host key mismatch for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
        `but ${file} lists ssh-ed25519 ${be2.hostKeyFingerprint} (line 1) for "${be1.ip}". The host was reinstalled or someone is ` +
        `intercepting the connection. If the new key is expected, pin it: hostKey: '${be1.hostKeyFingerprint}' (or fix ${file})`,
    );
  });

  test('GIVEN known_hosts without the host WHEN apply runs THEN the unknown key is refused, with how to pin it', async () => {
    const file = join(lab.dir, 'known_hosts_other');
    expect(refusal(await runs.get('known_hosts unknown')!)).toBe(
      `failed: be1 root@${be1.ip}:22: unknown host key for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
        `and ${file} has no entry for "${be1.ip}". If this is the right host, pin it: hostKey: '${be1.hostKeyFingerprint}' (or add it to ${file})`,
    );
  });
});

describe('authentication', () => {
  test('GIVEN a private key the host does not know WHEN apply runs THEN it is refused at once (no retries)', async () => {
    const r = await runs.get('wrong key')!;
    expect(refusal(r)).toBe(`failed: be1 root@${be1.ip}:22: authentication failed: the server did not accept the private key for user "root"`);
    expect(agentMs(r)).toBeLessThan(2000);
  });

  test('GIVEN a user that does not exist WHEN apply runs THEN it is refused, naming the user', async () => {
    expect(refusal(await runs.get('wrong user')!)).toBe(
      `failed: be1 nobodyhere@${be1.ip}:22: authentication failed: the server did not accept the private key for user "nobodyhere"`,
    );
  });
});

describe('reachability', () => {
  test('GIVEN sshd stopped WHEN apply runs THEN connection refused after 3 attempts, quickly', async () => {
    const r = await runs.get('sshd stopped')!;
    expect(refusal(r, 'down')).toBe(
      `failed: down root@${down.ip}:22: connection refused: is sshd running and listening on that address and port? (3 attempts)`,
    );
    // 3 refused attempts with 0.25 s and 0.5 s backoff in between
    expect(agentMs(r)).toBeGreaterThanOrEqual(700);
    expect(agentMs(r)).toBeLessThan(3000);
    await nothingRanOn(down);
  });

  test('GIVEN an address nobody uses WHEN apply runs with --timeout 1 THEN it fails within the retries budget', async () => {
    const r = await runs.get('unused ip')!;
    const ghost = unusedIp(lab, 202);
    // ARP for the address fails after about 3 s (no route to host); until then the 1 s handshake timeout fires
    expect(refusal(r)).toMatch(
      new RegExp(
        `^failed: be1 root@${ghost.replace(/\./g, '\\.')}:22: (no route to host|timed out after 1000 ms waiting for the SSH handshake) \\(3 attempts\\)$`,
      ),
    );
    // 3 attempts of at most 1 s each, plus 0.25 s + 0.5 s backoff
    expect(agentMs(r)).toBeLessThan(5500);
  });

  test('GIVEN a host that drops SSH packets WHEN apply runs with --timeout 1 THEN it times out after 3 attempts of 1 s', async () => {
    const r = await runs.get('dropped')!;
    expect(refusal(r, 'walled')).toBe(`failed: walled root@${walled.ip}:22: timed out after 1000 ms waiting for the SSH handshake (3 attempts)`);
    expect(agentMs(r)).toBeGreaterThanOrEqual(3700);
    expect(agentMs(r)).toBeLessThan(5500);
  });
});

describe('sudo', () => {
  test('GIVEN a user with passwordless sudo WHEN apply runs THEN it applies through sudo -n as root; a re-run changes nothing', async () => {
    const host = lab.hosts.sudoer;
    const r = await applyWith(host, { user: 'tulaops' }, '10');
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`tula-dsr: sudoer: connected to tulaops@${host.ip}:22\n`);
    expect(r.stdout).toMatch(/^sudoer +: ok=1 changed=7 failed=0 skipped=0 /m);
    expect(await sh(host, 'stat -c %U:%G /var/lib/tula-dsr/backend.json /etc/sysctl.d/99-tula-dsr.conf')).toBe('root:root\nroot:root\n');
    expect(await sh(host, 'sysctl -n net.ipv4.conf.all.arp_ignore')).toBe('1\n');
    const again = await applyWith(host, { user: 'tulaops' }, '10');
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(/^sudoer +: ok=8 changed=0 failed=0 skipped=0 +\(\d+ ms, 1 round trips\)$/m);
  });

  test('GIVEN a user without sudo rights WHEN apply runs THEN the clear sudo-password error, and nothing changed', async () => {
    const host = lab.hosts.nosudo;
    expect(refusal(await runs.get('no sudo rights')!, 'nosudo')).toBe(
      `failed: nosudo tulanosudo@${host.ip}:22: sudo needs a password for user "tulanosudo" (sudo said: a password is required): ` +
        'allow passwordless sudo (NOPASSWD) for this user, or log in as root',
    );
    await nothingRanOn(host);
  });
});

describe('a spec refused while the connection is being made', () => {
  /** The refusal of BAD_VIP, as the user sees it. */
  function specRefusal(r: CliResult, host: LabHost): void {
    expect(r.code).toBe(1);
    expectNoStackTrace(r.stdout + r.stderr);
    expect(r.stdout).toContain(
      `failed: (spec) tula-dsr found 1 problem in the configuration:\n  - lab/vip0/${host.name}: ip: "${BAD_VIP}" is not an IP address`,
    );
    expect(r.stdout).toMatch(/^\(spec\) +: ok=0 changed=0 failed=1 skipped=0 {2}\(\d+ ms, 0 round trips\)$/m);
  }

  test('GIVEN an invalid VIP address and a host that drops SSH WHEN apply runs THEN the spec error is printed, and the CLI does not wait for the connection it began', async () => {
    const r = await runs.get('bad spec, dropped host')!;
    specRefusal(r, walled);
    expect(r.stdout).not.toMatch(/timed out/);
    // the connect timeout is 10 s, with two retries: a connection left going would hold the CLI for half a minute
    expect(r.ms).toBeLessThan(8000);
  });

  test('GIVEN an invalid VIP address and a reachable host WHEN apply runs THEN the spec error is printed, nothing ran on the host, and no SSH connection is left open', async () => {
    specRefusal(await runs.get('bad spec, reachable host')!, be2);
    await nothingRanOn(be2);
    expect(await sh(be2, "ss -Htn state established '( sport = :22 )' | wc -l")).toBe('0\n');
  });
});
