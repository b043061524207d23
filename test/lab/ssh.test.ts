/**
 * The namespace lab and the ssh2 connection layer against real sshd servers in real network namespaces.
 * Needs root. Without root, createLab throws and every test here fails (never skips).
 */
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, existsSync, writeFileSync, copyFileSync } from 'node:fs';
import { createLab, reapStaleLabs, Lab } from '../../lab/topology';
import { addNetns } from '../../lab/netns';
import { execFile, execOk, spawnBackground, BackgroundProcess, waitFor } from '../../lab/exec';
import { connect, SshConnection, ConnectOptions } from '../../agent/ssh/connection';
import { ConnectionPool } from '../support/connection-pool';
import { SshError, SshErrorInfo } from '../../agent/ssh/errors';
import type { SshTarget } from '../../agent/ssh/target';

jest.setTimeout(30_000);

/** Runs f and returns the SshError it rejects with; fails the test if it resolves or throws something else. */
async function connectError(target: SshTarget, opts: ConnectOptions = {}): Promise<SshError> {
  let conn: SshConnection | undefined;
  try {
    conn = await connect(target, opts);
  } catch (e) {
    if (e instanceof SshError) return e;
    throw e;
  }
  await conn.close();
  throw new Error(`expected connect to ${target.host} to fail, but it succeeded`);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Machine-wide state no lab may change (other labs running in parallel do not change it either). */
function machineFiles() {
  const sha = (p: string) => (existsSync(p) ? createHash('sha256').update(readFileSync(p)).digest('hex') : 'missing');
  return {
    passwd: sha('/etc/passwd'),
    group: sha('/etc/group'),
    shadow: sha('/etc/shadow'),
    hosts: sha('/etc/hosts'),
    sudoersD: existsSync('/etc/sudoers.d') ? readdirSync('/etc/sudoers.d').sort() : [],
    rootHome: readdirSync('/root').sort(),
    etcSsh: readdirSync('/etc/ssh').sort(),
    varLibTula: existsSync('/var/lib/tula-dsr'),
    etcTula: existsSync('/etc/tula-dsr'),
  };
}

/** Everything of one lab that could outlive it; all empty once it is torn down. */
async function labTraces(lab: Lab) {
  const net = lab.subnet.replace(/0\/24$/, '');
  const lines = async (argv: string[]) => (await execOk(argv)).stdout.split('\n').filter((l) => l !== '');
  return {
    netns: (await lines(['ip', 'netns', 'list']))
      .map((l) => l.split(' ')[0])
      .filter((n) => n.startsWith(`tula-${lab.id}-`))
      .sort(),
    links: (await lines(['ip', '-br', 'link'])).filter((l) => l.startsWith(lab.controllerIf)),
    addrs: (await lines(['ip', '-br', '-4', 'addr'])).filter((l) => l.includes(net)),
    routes: (await lines(['ip', '-4', 'route', 'show', 'table', 'all'])).filter((l) => l.includes(net)),
    etcNetns: existsSync('/etc/netns') ? readdirSync('/etc/netns').filter((n) => n.includes(lab.id)) : [],
    labDir: existsSync(lab.dir),
    subnetLock: existsSync(`/run/tula-lab/subnets/${lab.subnet.split('.')[2]}`),
  };
}

describe('lab lifecycle', () => {
  test('GIVEN a 3-host lab WHEN it is torn down THEN nothing is left behind', async () => {
    const before = machineFiles();
    const t0 = Date.now();
    const lab = await createLab({ hosts: [{ name: 'lb' }, { name: 'be1' }, { name: 'be2' }], users: [{ name: 'tulaops', sudo: true }] });
    const setupMs = Date.now() - t0;
    const pids = Object.values(lab.hosts).map((h) => h.anchorPid);
    const sshdPids = (await Promise.all(lab.netnsNames.map((n) => execOk(['ip', 'netns', 'pids', n]))))
      .flatMap((r) => r.stdout.split('\n'))
      .filter((l) => l !== '')
      .map(Number);
    try {
      // THEN while it runs: 4 namespaces, a controller veth, one anchor and one sshd per host
      expect((await execOk(['ip', 'netns', 'list'])).stdout).toContain(`tula-${lab.id}-switch`);
      expect(lab.netnsNames).toEqual([`tula-${lab.id}-switch`, `tula-${lab.id}-lb`, `tula-${lab.id}-be1`, `tula-${lab.id}-be2`]);
      expect(sshdPids.length).toBe(6);
      expect(setupMs).toBeLessThan(3000);
      expect(await labTraces(lab)).toEqual({
        netns: [...lab.netnsNames].sort(),
        links: [expect.stringMatching(new RegExp(`^${lab.controllerIf}@if\\d+ +UP `))],
        addrs: [expect.stringMatching(new RegExp(`^${lab.controllerIf}@if\\d+ +UP +${lab.controllerIp}/24 *$`))],
        routes: expect.arrayContaining([
          expect.stringMatching(new RegExp(`^${lab.subnet} dev ${lab.controllerIf} proto kernel scope link src ${lab.controllerIp}`)),
        ]),
        etcNetns: [],
        labDir: true,
        subnetLock: true,
      });
    } finally {
      const t1 = Date.now();
      await lab.teardown();
      console.log(`lab timings: setup ${setupMs} ms (3 hosts + a sudo user), teardown ${Date.now() - t1} ms`);
    }
    // THEN afterwards the machine looks exactly as before and every process is gone
    expect(machineFiles()).toEqual(before);
    expect(await labTraces(lab)).toEqual({ netns: [], links: [], addrs: [], routes: [], etcNetns: [], labDir: false, subnetLock: false });
    expect([...pids, ...sshdPids].filter(alive)).toEqual([]);
    // AND teardown is idempotent
    await expect(lab.teardown()).resolves.toBeUndefined();
  });

  test('GIVEN bad host names THEN createLab refuses before touching anything', async () => {
    await expect(createLab({ hosts: [{ name: 'Be_1' }] })).rejects.toThrow(
      new Error('lab host name "Be_1" is invalid: use [a-z][a-z0-9]*, at most 12 characters, not "switch"'),
    );
    await expect(createLab({ hosts: [{ name: 'be1' }, { name: 'be1' }] })).rejects.toThrow(new Error('lab host name "be1" is used twice'));
    await expect(createLab({ hosts: [{ name: 'be1', octet: 254 }] })).rejects.toThrow(
      new Error('lab host be1: octet 254 is invalid: use 1 to 253 (254 is the controller)'),
    );
    await expect(
      createLab({
        hosts: [
          { name: 'be1', octet: 7 },
          { name: 'be2', octet: 7 },
        ],
      }),
    ).rejects.toThrow(new Error('lab host octet 7 is used twice'));
    await expect(createLab({ hosts: [{ name: 'be1' }], subnet: '192.168.1.0/24' })).rejects.toThrow(
      new Error('lab subnet "192.168.1.0/24" is not allowed: use a /24 inside 10.213.0.0/16, 10.213.1.0/24 to 10.213.254.0/24'),
    );
    await expect(createLab({ hosts: [{ name: 'be1' }], users: [{ name: 'root', sudo: false }] })).rejects.toThrow(
      new Error('lab user name "root" exists on this machine already: pick another name'),
    );
  });
});

describe('lab safety', () => {
  test('GIVEN no root THEN createLab fails loudly', async () => {
    const spy = jest.spyOn(process, 'getuid').mockReturnValue(1000);
    try {
      await expect(createLab({ hosts: [{ name: 'be1' }] })).rejects.toThrow(new Error('the lab needs root (network namespaces, sshd): run as root'));
    } finally {
      spy.mockRestore();
    }
  });

  test('GIVEN a namespace the lab did not create THEN addNetns refuses to use it', async () => {
    const name = `tula-foreign-${process.pid}`;
    await execOk(['ip', 'netns', 'add', name]);
    try {
      await expect(addNetns(name)).rejects.toThrow(new Error(`network namespace "${name}" exists already and was not created by this lab: refusing to use it`));
    } finally {
      await execOk(['ip', 'netns', 'delete', name]);
    }
  });

  test('GIVEN a lab whose owner died THEN reapStaleLabs removes it, and only it', async () => {
    const live = await createLab({ hosts: [{ name: 'a' }] });
    const orphan = await createLab({ hosts: [{ name: 'b' }] });
    try {
      // WHEN the orphan's owner is recorded as a process that no longer exists
      const statePath = `${orphan.dir}/lab.json`;
      const state = JSON.parse(readFileSync(statePath, 'utf8'));
      writeFileSync(statePath, JSON.stringify({ ...state, owner: { pid: 999_999_999, start: '1' } }));
      const reaped = await reapStaleLabs();
      // THEN
      expect(reaped).toContain(orphan.id);
      expect(reaped).not.toContain(live.id);
      const netns = (await execOk(['ip', 'netns', 'list'])).stdout;
      expect(netns).not.toContain(`tula-${orphan.id}-`);
      expect(netns).toContain(`tula-${live.id}-a`);
      expect(existsSync(orphan.dir)).toBe(false);
      expect((await execFile(['ip', 'link', 'show', 'dev', orphan.controllerIf])).code).not.toBe(0);
    } finally {
      await orphan.teardown();
      await live.teardown();
    }
  });
});

describe('lab hosts and ssh', () => {
  let lab: Lab;
  let agent: BackgroundProcess | undefined;

  beforeAll(async () => {
    lab = await createLab({
      hosts: [
        {
          name: 'be1',
          users: [
            { name: 'tulaops', sudo: true },
            { name: 'tulanosudo', sudo: false },
          ],
        },
        { name: 'be2', octet: 12 },
        { name: 'client', sshd: false },
      ],
    });
  });

  afterAll(async () => {
    await agent?.stop('SIGTERM');
    await lab?.teardown();
  });

  describe('host isolation', () => {
    test('each host has its own name, address, clean root home and users', async () => {
      const be1 = lab.hosts.be1;
      const r = await be1.exec(
        "hostname; ip -4 -o addr show dev eth0 | awk '{print $2, $4}'; ls -A /root; ls -A /root/.ssh; id -un tulaops; cat /etc/sudoers.d/tula-lab-tulaops",
      );
      expect(r).toEqual({
        stdout: `be1\neth0 ${be1.ip}/24\n.ssh\nauthorized_keys\ntulaops\ntulaops ALL=(ALL:ALL) NOPASSWD: ALL\n`,
        stderr: '',
        code: 0,
      });
      expect(be1.ip).toBe(lab.subnet.replace(/0\/24$/, '1'));
      expect(lab.hosts.be2.ip).toBe(lab.subnet.replace(/0\/24$/, '12'));
      expect(lab.hosts.client.ip).toBe(lab.subnet.replace(/0\/24$/, '3'));
      expect(lab.controllerIp).toBe(lab.subnet.replace(/0\/24$/, '254'));
      expect(be1.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
      expect(await lab.hosts.be2.exec(['id', 'tulaops'])).toEqual({ stdout: '', stderr: "id: 'tulaops': no such user\n", code: 1 });
      expect(await execFile(['id', 'tulaops'])).toEqual({ stdout: '', stderr: "id: 'tulaops': no such user\n", code: 1 });
    });

    test('files written under /etc and /var stay on that host', async () => {
      await lab.hosts.be1.exec('mkdir -p /etc/tula-dsr /var/lib/tula-dsr && echo be1 > /etc/tula-dsr/who && echo gen1 > /var/lib/tula-dsr/state');
      expect(readFileSync(lab.hosts.be1.path('/etc/tula-dsr/who'), 'utf8')).toBe('be1\n');
      expect(readFileSync(lab.hosts.be1.path('/var/lib/tula-dsr/state'), 'utf8')).toBe('gen1\n');
      expect(existsSync('/etc/tula-dsr')).toBe(false);
      expect(existsSync('/var/lib/tula-dsr')).toBe(false);
      expect(await lab.hosts.be2.exec('ls /etc/tula-dsr /var/lib/tula-dsr')).toMatchObject({ stdout: '', code: 2 });
    });

    test('sysctls are per host namespace', async () => {
      await lab.hosts.be1.exec('sysctl -qw net.ipv4.conf.all.arp_ignore=1');
      expect((await lab.hosts.be1.exec('sysctl -n net.ipv4.conf.all.arp_ignore')).stdout).toBe('1\n');
      expect((await lab.hosts.be2.exec('sysctl -n net.ipv4.conf.all.arp_ignore')).stdout).toBe('0\n');
    });

    test('a second lab cannot take a subnet that is in use', async () => {
      await expect(createLab({ hosts: [{ name: 'x' }], subnet: lab.subnet })).rejects.toThrow(
        new Error(`lab subnet ${lab.subnet} is in use in the root namespace already`),
      );
    });

    test('background servers run inside the host', async () => {
      const server = lab.hosts.be2.spawn(['/usr/bin/python3', '-m', 'http.server', '--bind', lab.hosts.be2.ip, '8080']);
      try {
        const url = `http://${lab.hosts.be2.ip}:8080/`;
        const fetch = `import urllib.request,time\nfor i in range(100):\n  try: print(urllib.request.urlopen("${url}").status); break\n  except OSError: time.sleep(0.05)`;
        const r = await lab.hosts.client.exec(['/usr/bin/python3', '-c', fetch]);
        expect(r).toEqual({ stdout: '200\n', stderr: '', code: 0 });
      } finally {
        await server.stop();
      }
    });

    test('hosts reach each other over the bridge', async () => {
      const r = await lab.hosts.client.exec(['ping', '-c1', '-W2', lab.hosts.be2.ip]);
      expect(r.code).toBe(0);
    });
  });

  describe('connect and run', () => {
    let conn: SshConnection;
    beforeAll(async () => {
      conn = await connect(lab.hosts.be1.target());
    });
    afterAll(async () => {
      await conn?.close();
    });

    test('runs a script in one exec channel and returns stdout, stderr and the exit code', async () => {
      const before = conn.roundTrips;
      const r = await conn.run('echo "hello from $(hostname)"\necho oops >&2\nexit 3');
      expect(r).toEqual({ stdout: 'hello from be1\n', stderr: 'oops\n', code: 3 });
      expect(conn.roundTrips).toBe(before + 1);
      expect(conn.hostKeyFingerprint).toBe(lab.hosts.be1.hostKeyFingerprint);
      expect(conn.attempts).toBe(1);
    });

    test('runs as root with LC_ALL=C (exported to the commands it starts, also with stdin) and nothing from a login profile', async () => {
      expect(await conn.run('id -un; echo "$LC_ALL"; echo "$HOME"; sh -c \'echo "$LC_ALL"\'')).toEqual({ stdout: 'root\nC\n/root\nC\n', stderr: '', code: 0 });
      expect(await conn.run('cat; sh -c \'echo " $LC_ALL"\'', { stdin: 'in' })).toEqual({ stdout: 'in C\n', stderr: '', code: 0 });
      // root's login shell hands over to sh with exec: no `env` process between them
      expect(conn.command).toBe('exec /bin/sh -s');
    });

    test('passes stdin byte for byte, also without a trailing newline', async () => {
      const data = 'line 1\n\'quoted\' "double" $HOME `id` \\ \ttab\nTULA_DSR_STDIN\nlast line without newline';
      const r = await conn.run('cat > /tmp/in && wc -c < /tmp/in && cat /tmp/in', { stdin: data });
      expect(r).toEqual({ stdout: `${Buffer.byteLength(data)}\n${data}`, stderr: '', code: 0 });
    });

    test('a script without stdin reads EOF', async () => {
      expect(await conn.run('cat; echo done')).toEqual({ stdout: 'done\n', stderr: '', code: 0 });
    });

    test('a script is parsed completely before any of it runs', async () => {
      const r = await conn.run('echo before\nif then');
      expect(r.stdout).toBe('');
      expect(r.code).toBe(2);
    });

    test('large scripts and large stdin go through (no argv length limit)', async () => {
      const lines = Array.from({ length: 20_000 }, (_, i) => `echo line${i} >/dev/null`).join('\n');
      const big = 'x'.repeat(1_000_000);
      expect(await conn.run(`${lines}\nwc -c`, { stdin: big })).toEqual({ stdout: '1000000\n', stderr: '', code: 0 });
    });

    test('runs in turn share one shell on the host, and nothing a run sets, traps or ends reaches the next', async () => {
      const c = await connect(lab.hosts.be2.target());
      try {
        // $$ in a subshell is its shell's pid: the same for every run that shell serves
        const shellPid = (await c.run('echo $$')).stdout;
        expect(await c.run('x=leaked; export y=leaked; cd /tmp; umask 077; trap "echo trapped" EXIT; exec 7>/dev/null; exit 4')).toEqual({
          stdout: 'trapped\n',
          stderr: '',
          code: 4,
        });
        expect(await c.run('echo "[$x][$y]"; pwd; umask; [ -e /proc/self/fd/7 ] && echo fd7; echo $$')).toEqual({
          stdout: `[][]\n/root\n0022\n${shellPid}`,
          stderr: '',
          code: 0,
        });
        // output without a final newline, and a run that writes nothing
        expect(await c.run('printf "no newline"; printf "err" >&2')).toEqual({ stdout: 'no newline', stderr: 'err', code: 0 });
        expect(await c.run('true')).toEqual({ stdout: '', stderr: '', code: 0 });
        // two runs at once cannot share it: the second gets a shell of its own, and both come back whole
        const [a, b] = await Promise.all([c.run('sleep 0.3; echo $$'), c.run('echo $$')]);
        expect(new Set([a.stdout, b.stdout]).size).toBe(2);
        expect([a.code, b.code]).toEqual([0, 0]);
        // a syntax error ends that shell; the next run opens another
        expect(await c.run('if then')).toMatchObject({ code: 2, stdout: '' });
        expect(await c.run('echo after')).toEqual({ stdout: 'after\n', stderr: '', code: 0 });
        expect(c.roundTrips).toBe(9);
      } finally {
        await c.close();
      }
    });

    test('a script killed by a signal reports 128 + signal', async () => {
      expect(await conn.run('kill -TERM $$')).toMatchObject({ code: 143 });
    });

    test('a connection pool keeps one connection per host', async () => {
      const pool = new ConnectionPool();
      const [a, b] = await Promise.all([pool.get(lab.hosts.be2.target()), pool.get(lab.hosts.be2.target())]);
      expect(a).toBe(b);
      await a.run('true');
      await b.run('true');
      expect(await pool.roundTrips()).toBe(2);
      // a lost connection is replaced on the next get()
      await a.run('kill -9 $PPID').catch(() => undefined);
      await a.whenClosed;
      expect(a.open).toBe(false);
      const c = await pool.get(lab.hosts.be2.target());
      expect(c).not.toBe(a);
      expect((await c.run('echo again')).stdout).toBe('again\n');
      await pool.closeAll();
    });

    test('a dropped connection is a connection-lost error, also for later runs', async () => {
      const c = await connect(lab.hosts.be2.target());
      // the script's parent is the sshd session process: killing it drops the connection mid-run
      const err = await c.run('kill -9 $PPID; sleep 5').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SshError);
      expect((err as SshError).info).toMatchObject({ kind: 'connection-lost', host: lab.hosts.be2.ip, port: 22, user: 'root' });
      await expect(c.run('true')).rejects.toMatchObject({ info: { kind: 'connection-lost' } });
      await c.close();
    });
  });

  describe('host key verification', () => {
    test('a pinned SHA256 fingerprint is accepted', async () => {
      const c = await connect(lab.hosts.be1.target({ hostKey: lab.hosts.be1.hostKeyFingerprint }));
      expect((await c.run('hostname')).stdout).toBe('be1\n');
      await c.close();
    });

    test('a pinned public key line is accepted', async () => {
      const c = await connect(lab.hosts.be1.target({ hostKey: lab.hosts.be1.hostKeyLine }));
      await c.close();
    });

    test('a plain known_hosts entry is accepted', async () => {
      const c = await connect(lab.hosts.be1.target({ hostKey: undefined, knownHostsFile: lab.knownHostsPath }));
      expect(c.hostKeyFingerprint).toBe(lab.hosts.be1.hostKeyFingerprint);
      await c.close();
    });

    test('a hashed known_hosts entry is accepted', async () => {
      const file = `${lab.dir}/known_hosts.hashed`;
      copyFileSync(lab.knownHostsPath, file);
      await execOk(['ssh-keygen', '-q', '-H', '-f', file]);
      expect(readFileSync(file, 'utf8')).toMatch(/^\|1\|/);
      const c = await connect(lab.hosts.be2.target({ hostKey: undefined, knownHostsFile: file }));
      await c.close();
    });

    test('an unknown host is refused and the message shows the offered fingerprint and how to pin it', async () => {
      const be1 = lab.hosts.be1;
      const file = `${lab.dir}/known_hosts.other`;
      writeFileSync(file, `10.213.0.99 ${be1.hostKeyLine}\n`);
      const err = await connectError(be1.target({ hostKey: undefined, knownHostsFile: file }));
      expect(err.info).toEqual<SshErrorInfo>({
        kind: 'host-key-unknown',
        host: be1.ip,
        port: 22,
        user: 'root',
        offeredFingerprint: be1.hostKeyFingerprint,
        attempts: 1,
        message:
          `root@${be1.ip}:22: unknown host key for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
          `and ${file} has no entry for "${be1.ip}". If this is the right host, pin it: hostKey: '${be1.hostKeyFingerprint}' (or add it to ${file})`,
      });
      expect(err.message).toBe(err.info.message);
    });

    test('a pinned key that differs is refused as a mismatch, without retries', async () => {
      const { be1, be2 } = lab.hosts;
      const err = await connectError(be1.target({ hostKey: be2.hostKeyFingerprint }), { retries: 3 });
      expect(err.info).toEqual<SshErrorInfo>({
        kind: 'host-key-mismatch',
        host: be1.ip,
        port: 22,
        user: 'root',
        offeredFingerprint: be1.hostKeyFingerprint,
        attempts: 1,
        message:
          `root@${be1.ip}:22: host key mismatch for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
          `but hostKey pins ${be2.hostKeyFingerprint}. The host was reinstalled or someone is intercepting the connection. ` +
          `If the new key is expected, pin it: hostKey: '${be1.hostKeyFingerprint}'`,
      });
    });

    test('a known_hosts entry with another key is refused as a mismatch', async () => {
      const { be1, be2 } = lab.hosts;
      const file = `${lab.dir}/known_hosts.swapped`;
      writeFileSync(file, `${be1.ip} ${be2.hostKeyLine}\n`);
      const err = await connectError(be1.target({ hostKey: undefined, knownHostsFile: file }));
      expect(err.info.kind).toBe('host-key-mismatch');
      expect(err.message).toBe(
        `root@${be1.ip}:22: host key mismatch for ${be1.ip}:22: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, ` +
          `but ${file} lists ssh-ed25519 ${be2.hostKeyFingerprint} (line 1) for "${be1.ip}". The host was reinstalled or ` +
          `someone is intercepting the connection. If the new key is expected, pin it: hostKey: '${be1.hostKeyFingerprint}' (or fix ${file})`,
      );
    });

    test('a @revoked key is refused even when also listed', async () => {
      const be1 = lab.hosts.be1;
      const file = `${lab.dir}/known_hosts.revoked`;
      writeFileSync(file, `${be1.ip} ${be1.hostKeyLine}\n@revoked * ${be1.hostKeyLine}\n`);
      const err = await connectError(be1.target({ hostKey: undefined, knownHostsFile: file }));
      expect(err.info.kind).toBe('host-key-revoked');
      expect(err.message).toBe(
        `root@${be1.ip}:22: host key for ${be1.ip}:22 is revoked: the host offered ssh-ed25519 ${be1.hostKeyFingerprint}, which ${file} marks @revoked (line 2). Refusing to connect.`,
      );
    });

    test.each([
      ['both hostKey and knownHostsFile', { knownHostsFile: '/dev/null' }, 'hostKey: and knownHostsFile are both set; set exactly one of them'],
      [
        'neither hostKey nor knownHostsFile',
        { hostKey: undefined },
        "hostKey: is missing: host keys are always verified, so set exactly one of hostKey ('SHA256:…' from `ssh-keygen -lf`, or an OpenSSH public key line) or knownHostsFile",
      ],
      [
        'a missing known_hosts file',
        { hostKey: undefined, knownHostsFile: '/nonexistent/known_hosts' },
        'cannot read knownHostsFile /nonexistent/known_hosts: ENOENT',
      ],
      ['a bad port', { port: 70000 }, 'port: 70000 is not allowed; use an integer from 1 to 65535'],
    ])('a target with %s is a config error before any connection', async (_what, overrides, message) => {
      const t = lab.hosts.be1.target(overrides);
      const err = await connectError(t);
      expect(err.info).toEqual({ kind: 'config', host: t.host, port: t.port, user: 'root', message: `root@${t.host}:${t.port}: ${message}` });
    });
  });

  describe('authentication', () => {
    test('a wrong private key is refused as auth-failed, without retries', async () => {
      const key = `${lab.dir}/wrong_ed25519`;
      await execOk(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-f', key]);
      const be1 = lab.hosts.be1;
      const err = await connectError(be1.target({ privateKeyPath: key }), { retries: 3 });
      expect(err.info).toEqual<SshErrorInfo>({
        kind: 'auth-failed',
        host: be1.ip,
        port: 22,
        user: 'root',
        attempts: 1,
        message: `root@${be1.ip}:22: authentication failed: the server did not accept the private key for user "root"`,
      });
    });

    test('a user that does not exist is refused as auth-failed', async () => {
      const be1 = lab.hosts.be1;
      const err = await connectError(be1.target({ user: 'nosuchuser' }));
      expect(err.message).toBe(`nosuchuser@${be1.ip}:22: authentication failed: the server did not accept the private key for user "nosuchuser"`);
    });

    test('a missing private key file is reported before connecting', async () => {
      const err = await connectError(lab.hosts.be1.target({ privateKeyPath: '/nonexistent/key' }));
      expect(err.info).toMatchObject({ kind: 'private-key', message: `root@${lab.hosts.be1.ip}:22: cannot read private key /nonexistent/key: ENOENT` });
    });

    test('an encrypted key needs TULA_DSR_SSH_PASSPHRASE, and works with it', async () => {
      const key = `${lab.dir}/encrypted_ed25519`;
      await execOk(['ssh-keygen', '-q', '-t', 'ed25519', '-N', 'correct horse', '-f', key]);
      const be1 = lab.hosts.be1;
      await be1.exec(`cat >> /root/.ssh/authorized_keys`, readFileSync(`${key}.pub`, 'utf8'));
      const t = be1.target({ privateKeyPath: key });
      expect((await connectError(t, { env: {} })).info).toMatchObject({
        kind: 'private-key',
        message: `root@${be1.ip}:22: private key ${key} is encrypted: put its passphrase in the environment variable TULA_DSR_SSH_PASSPHRASE`,
      });
      expect((await connectError(t, { env: { TULA_DSR_SSH_PASSPHRASE: 'wrong' } })).info).toMatchObject({
        kind: 'private-key',
        message: `root@${be1.ip}:22: cannot decrypt private key ${key} with the passphrase from TULA_DSR_SSH_PASSPHRASE`,
      });
      const c = await connect(t, { env: { TULA_DSR_SSH_PASSPHRASE: 'correct horse' } });
      expect((await c.run('echo ok')).stdout).toBe('ok\n');
      await c.close();
    });

    test('without a key path the ssh-agent at SSH_AUTH_SOCK is used', async () => {
      const sock = `${lab.dir}/agent.sock`;
      agent = spawnBackground(['ssh-agent', '-D', '-a', sock]);
      expect(await waitFor(() => existsSync(sock), 3000)).toBe(true);
      await execOk(['ssh-add', '-q', lab.clientKeyPath], { env: { SSH_AUTH_SOCK: sock } });
      const t = lab.hosts.be1.target({ privateKeyPath: undefined });
      const c = await connect(t, { env: { SSH_AUTH_SOCK: sock } });
      expect((await c.run('echo via agent')).stdout).toBe('via agent\n');
      await c.close();
      expect((await connectError(t, { env: {} })).info).toMatchObject({
        kind: 'agent',
        message: `root@${t.host}:22: no privateKeyPath and no ssh-agent (SSH_AUTH_SOCK is not set): set privateKeyPath or start ssh-agent`,
      });
    });
  });

  describe('sudo', () => {
    test('a non-root user runs the whole script through sudo -n, stdin included', async () => {
      const c = await connect(lab.hosts.be1.target({ user: 'tulaops' }));
      expect(c.sudo).toBe(true);
      expect(c.command).toBe("/usr/bin/env 'LC_ALL=C' sudo -n /bin/sh -s");
      expect(await c.run('id -un; echo "$SUDO_USER"; cat', { stdin: 'data\n' })).toEqual({ stdout: 'root\ntulaops\ndata\n', stderr: '', code: 0 });
      expect(c.roundTrips).toBe(1);
      await c.close();
    });

    test('a user without sudo rights gets the sudo-password error', async () => {
      const be1 = lab.hosts.be1;
      const c = await connect(be1.target({ user: 'tulanosudo' }));
      const err = await c.run('id -un').catch((e: unknown) => e);
      expect(err).toBeInstanceOf(SshError);
      expect((err as SshError).info).toEqual<SshErrorInfo>({
        kind: 'sudo-password',
        host: be1.ip,
        port: 22,
        user: 'tulanosudo',
        message:
          `tulanosudo@${be1.ip}:22: sudo needs a password for user "tulanosudo" (sudo said: a password is required): ` +
          'allow passwordless sudo (NOPASSWD) for this user, or log in as root',
      });
      await c.close();
    });

    test('with sudo: false a non-root user runs as itself', async () => {
      const c = await connect(lab.hosts.be1.target({ user: 'tulanosudo' }), { sudo: false });
      expect(await c.run('id -un')).toEqual({ stdout: 'tulanosudo\n', stderr: '', code: 0 });
      await c.close();
    });
  });

  describe('unreachable hosts', () => {
    test('sshd stopped: connection refused is retried with backoff, then reported', async () => {
      const be2 = lab.hosts.be2;
      await be2.stopSshd();
      try {
        const t0 = Date.now();
        const err = await connectError(be2.target(), { retries: 2, retryDelayMs: 100 });
        const elapsed = Date.now() - t0;
        expect(err.info).toEqual<SshErrorInfo>({
          kind: 'unreachable',
          host: be2.ip,
          port: 22,
          user: 'root',
          code: 'ECONNREFUSED',
          attempts: 3,
          message: `root@${be2.ip}:22: connection refused: is sshd running and listening on that address and port? (3 attempts)`,
        });
        // 100 ms + 200 ms of backoff
        expect(elapsed).toBeGreaterThanOrEqual(300);
        expect(elapsed).toBeLessThan(2000);
      } finally {
        await be2.startSshd();
      }
      const c = await connect(be2.target());
      await c.close();
    });

    test('sshd comes back while we retry: the connect succeeds on a later attempt', async () => {
      const be2 = lab.hosts.be2;
      await be2.stopSshd();
      const restart = new Promise((r) => setTimeout(r, 300)).then(() => be2.startSshd());
      const c = await connect(be2.target(), { retries: 5, retryDelayMs: 200 });
      await restart;
      expect(c.attempts).toBeGreaterThan(1);
      await c.close();
    });

    test('an address where nobody answers times out within the configured timeout', async () => {
      const ip = lab.subnet.replace(/\.0\/24$/, '.200');
      const t0 = Date.now();
      const err = await connectError(
        { host: ip, hostKey: lab.hosts.be1.hostKeyFingerprint, privateKeyPath: lab.clientKeyPath },
        { timeoutMs: 2000, retries: 0 },
      );
      const elapsed = Date.now() - t0;
      expect(err.info).toEqual<SshErrorInfo>({
        kind: 'timeout',
        host: ip,
        port: 22,
        user: 'root',
        attempts: 1,
        message: `root@${ip}:22: timed out after 2000 ms waiting for the SSH handshake (1 attempt)`,
      });
      expect(elapsed).toBeGreaterThanOrEqual(1900);
      expect(elapsed).toBeLessThan(2600);
    });
  });

  describe('timings', () => {
    test('connect, run and the system ssh client are fast', async () => {
      const be1 = lab.hosts.be1;
      const connectMs: number[] = [];
      const firstRunMs: number[] = [];
      const runMs: number[] = [];
      const sshMs: number[] = [];
      for (let i = 0; i < 7; i++) {
        let t = performance.now();
        const c = await connect(be1.target());
        connectMs.push(performance.now() - t);
        for (let j = 0; j < 5; j++) {
          t = performance.now();
          await c.run('true');
          (j === 0 ? firstRunMs : runMs).push(performance.now() - t);
        }
        await c.close();
        t = performance.now();
        const r = await execFile([...be1.sshArgv(), 'true']);
        sshMs.push(performance.now() - t);
        expect(r).toEqual({ stdout: '', stderr: '', code: 0 });
      }
      console.log(
        `ssh timings (medians): connect ${median(connectMs).toFixed(1)} ms, first run('true') on a connection ` +
          `${median(firstRunMs).toFixed(1)} ms, later run('true') ${median(runMs).toFixed(1)} ms, ` +
          `system "ssh host true" ${median(sshMs).toFixed(1)} ms`,
      );
      expect(median(runMs)).toBeLessThan(100);
      expect(median(connectMs)).toBeLessThan(500);
    });
  });
});
