/**
 * The agent daemon. Terraform's provisioners run `node -e 'require("tula-dsr/agent").main(["apply"])'`,
 * one process per host; that small entry hands the run to a per-user daemon that has the agent loaded. These tests
 * run the provisioner command exactly as Terraform does (real processes, real sshd in the lab) and check that the
 * daemon changes nothing a user can see: results, exit codes, the caller's folder and environment, and that it
 * stays safe (a private folder, fail-over to an in-process run, clear errors) and goes away when idle.
 */
import {
  chmodSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
  chownSync,
} from 'node:fs';
import { createServer, connect } from 'node:net';
import { dirname, join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFile, ExecResult } from '../../lab/exec';
import { createLab, Lab } from '../../lab/topology';
import { runtimeDir } from '../../agent/daemon/paths';
import { processRunning, stopAgentDaemons } from '../../lab/agent-daemons';
import { REPO, addresses, assertDistFresh, backendSpec, run, sleep } from './helpers';

jest.setTimeout(60_000);

const PROVISIONER = (verb: string, ...args: string[]) => ['node', '-e', `require("tula-dsr/agent").main(${JSON.stringify([verb, ...args])})`];

let lab: Lab;
let dirs = 0;

beforeAll(async () => {
  assertDistFresh();
  lab = await createLab({ hosts: [{ name: 'be1' }, { name: 'be2' }, { name: 'be3' }] });
});

afterAll(async () => {
  if (lab) for (const name of readdirSync(lab.dir).filter((n) => n.startsWith('rt'))) await stopAgentDaemons(join(lab.dir, name));
  await lab?.teardown();
});

/** A fresh runtime folder for the daemon (inside the lab's private folder, removed with it). */
function runtimeFolder(): string {
  const dir = join(lab.dir, `rt${++dirs}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

const vipOf = (n: number) => lab.subnet.replace(/\.0\/24$/, `.${200 + n}`);
const specText = (host: string, n = 0) => JSON.stringify(backendSpec(lab, lab.hosts[host], [{ ip: vipOf(n) }]));

/** The environment Terraform gives the provisioner: the spec gzipped and base64-encoded. */
const terraformEnv = (text: string) => ({ TULA_DSR_SPEC_GZ_0: gzipSync(text).toString('base64') });

function provision(runtime: string, env: Record<string, string>, argv = PROVISIONER('apply'), cwd = REPO): Promise<ExecResult> {
  return execFile(argv, { env: { TULA_DSR_RUNTIME_DIR: runtime, ...env }, cwd, timeoutMs: 45_000 });
}

/** Exit 0, with the output in the failure message otherwise. */
function expectOk(r: ExecResult): void {
  if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stderr}\n${r.stdout}`);
}

const recap = (out: string) => /ok=(\d+) changed=(\d+) failed=(\d+)/.exec(out)?.slice(1).map(Number);
const pidFiles = (dir: string) => readdirSync(dir).filter((n) => n.endsWith('.sock.pid'));
const daemonPid = (dir: string) => Number(readFileSync(join(dir, pidFiles(dir)[0]), 'utf8'));

describe('provisioners through the daemon', () => {
  test('three provisioners at once are served by one daemon, with the results of an in-process run', async () => {
    const rt = runtimeFolder();
    const hosts = ['be1', 'be2', 'be3'];
    const first = await Promise.all(hosts.map((h) => provision(rt, terraformEnv(specText(h)))));
    for (const r of first) {
      expect(r.stderr).not.toMatch(/daemon unavailable/);
      expect(r.code).toBe(0);
      expect(recap(r.stdout)?.[1]).toBeGreaterThan(0);
      expect(recap(r.stdout)?.[2]).toBe(0);
    }
    for (const h of hosts) expect(await addresses(lab.hosts[h], 'lo')).toContain(`${vipOf(0)}/32`);
    expect(pidFiles(rt)).toHaveLength(1);
    const log = readFileSync(join(rt, 'daemon.log'), 'utf8');
    expect(log.match(/serving /g)).toHaveLength(1);
    const pid = daemonPid(rt);

    // the same no-op through the daemon and in the provisioner's own process
    const viaDaemon = await provision(rt, terraformEnv(specText('be1')));
    const inProcess = await provision(rt, { ...terraformEnv(specText('be1')), TULA_DSR_DAEMON: '0' });
    expect(viaDaemon.code).toBe(0);
    expect(inProcess.code).toBe(0);
    expect(recap(viaDaemon.stdout)).toEqual(recap(inProcess.stdout));
    expect(recap(viaDaemon.stdout)?.[1]).toBe(0);
    const tasks = (out: string) => out.split('\n').filter((l) => /^(ok|changed|failed|skipped): /.test(l));
    expect(tasks(viaDaemon.stdout)).toEqual(tasks(inProcess.stdout));
    expect(tasks(viaDaemon.stdout).length).toBeGreaterThan(0);
    expect(daemonPid(rt)).toBe(pid);
  });

  test("exit codes and errors are the agent's own: a bad spec fails with its message and no stack trace", async () => {
    const rt = runtimeFolder();
    const bad = JSON.parse(specText('be1')) as { services: { ip: string }[] };
    bad.services[0].ip = '10.0.0.300';
    const r = await provision(rt, terraformEnv(JSON.stringify(bad)));
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/10\.0\.0\.300/);
    expect(r.stdout + r.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
    const usage = await provision(rt, {}, PROVISIONER('frobnicate'));
    expect(usage.code).toBe(64);
    expect(usage.stderr).toMatch(/unknown command "frobnicate"/);
    expect(pidFiles(rt)).toHaveLength(1);
  });

  test("the caller's folder and environment: relative spec and key paths resolve where the provisioner runs", async () => {
    const rt = runtimeFolder();
    const work = mkdtempSync(join(lab.dir, 'cwd-'));
    // a project of the user's, with tula-dsr installed in its node_modules
    mkdirSync(join(work, 'node_modules'));
    symlinkSync(REPO, join(work, 'node_modules', 'tula-dsr'));
    const spec = JSON.parse(specText('be2', 1)) as { ssh: { privateKeyPath: string } };
    spec.ssh.privateKeyPath = relative(work, lab.clientKeyPath);
    expect(spec.ssh.privateKeyPath.startsWith('..')).toBe(true);
    writeFileSync(join(work, 'spec.json'), JSON.stringify(spec));
    const r = await provision(rt, {}, PROVISIONER('apply', '--spec', 'spec.json'), work);
    expect(r.stderr).not.toMatch(/daemon unavailable/);
    expectOk(r);
    expect(readFileSync(join(rt, 'daemon.log'), 'utf8')).toMatch(/serving /);
    expect(await addresses(lab.hosts.be2, 'lo')).toContain(`${vipOf(1)}/32`);
    // the daemon started from another folder (REPO) in a earlier run would resolve these paths wrongly
    const again = await provision(rt, {}, PROVISIONER('check', '--spec', 'spec.json'), work);
    expect(again.code).toBe(0);
    // TULA_DSR_SSH_TIMEOUT comes from the caller too: a nonsense value is the caller's usage error
    const timeout = await provision(rt, { TULA_DSR_SSH_TIMEOUT: '-5' }, PROVISIONER('check', '--spec', 'spec.json'), work);
    expect(timeout.code).toBe(64);
    expect(timeout.stderr).toMatch(/--timeout needs a positive number/);
  });

  test('the daemon keeps no caller environment of its own (no spec, no passphrase in /proc/PID/environ)', async () => {
    const rt = runtimeFolder();
    const r = await provision(rt, { ...terraformEnv(specText('be3', 2)), TULA_DSR_SSH_PASSPHRASE: 'not-a-real-secret' });
    expect(r.code).toBe(0);
    const environ = readFileSync(`/proc/${daemonPid(rt)}/environ`, 'utf8');
    expect(environ).not.toMatch(/TULA_DSR_SPEC|TULA_DSR_SSH_PASSPHRASE|not-a-real-secret/);
    expect(readFileSync(join(rt, 'daemon.log'), 'utf8')).not.toMatch(/not-a-real-secret|TULA_DSR_SPEC/);
  });

  test('an idle daemon stops by itself and removes its socket', async () => {
    const rt = runtimeFolder();
    const r = await provision(rt, { ...terraformEnv(specText('be1')), TULA_DSR_DAEMON_IDLE_MS: '400' });
    expect(r.code).toBe(0);
    const pid = daemonPid(rt);
    const deadline = Date.now() + 10_000;
    while (processRunning(pid) && Date.now() < deadline) await sleep(50);
    expect(processRunning(pid)).toBe(false);
    expect(readdirSync(rt).filter((n) => n.endsWith('.sock') || n.endsWith('.pid'))).toEqual([]);
    expect(readFileSync(join(rt, 'daemon.log'), 'utf8')).toMatch(/stopped: idle for 400 ms/);
  });
});

describe('when the daemon cannot serve', () => {
  test('a runtime folder other users can enter: the provisioner says so and runs the agent itself', async () => {
    const rt = runtimeFolder();
    chmodSync(rt, 0o777);
    const r = await provision(rt, terraformEnv(specText('be1')));
    expect(r.stderr).toMatch(/agent daemon unavailable \(.*is open to other users \(mode 777\); it must be 700\); running the agent in this process/);
    expect(r.code).toBe(0);
    expect(recap(r.stdout)).toEqual([expect.any(Number), 0, 0]);
    expect(readdirSync(rt)).toEqual([]);
  });

  test('a socket left by a daemon that died is replaced', async () => {
    const rt = runtimeFolder();
    // learn the socket's name from a daemon, stop it, and leave a dead socket file in its place
    expect((await provision(rt, terraformEnv(specText('be1')))).code).toBe(0);
    const sock = join(
      rt,
      readdirSync(rt).find((n) => n.endsWith('.sock'))!,
    );
    await stopAgentDaemons(rt);
    const bound = await execFile(['python3', '-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1])', sock]);
    expect(bound.code).toBe(0);
    expect(existsSync(sock)).toBe(true);
    const r = await provision(rt, terraformEnv(specText('be1')));
    expect(r.stderr).not.toMatch(/daemon unavailable/);
    expect(r.code).toBe(0);
    expect(pidFiles(rt)).toHaveLength(1);
  });

  test('a daemon that goes away mid-run: the provisioner fails with a clear message', async () => {
    const rt = runtimeFolder();
    expect((await provision(rt, terraformEnv(specText('be1')))).code).toBe(0);
    const sock = join(
      rt,
      readdirSync(rt).find((n) => n.endsWith('.sock'))!,
    );
    await stopAgentDaemons(rt);
    // a stand-in that accepts the request and hangs up without a result, as a crashed daemon would
    const server = createServer((s) => s.once('data', () => s.destroy()));
    await new Promise<void>((resolve) => server.listen(sock, resolve));
    try {
      const r = await provision(rt, terraformEnv(specText('be1')));
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/the agent daemon closed the connection before reporting a result \(see .*daemon\.log\)/);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });

  test('a malformed request gets a usage error, not a crash', async () => {
    const rt = runtimeFolder();
    expect((await provision(rt, terraformEnv(specText('be1')))).code).toBe(0);
    const sock = join(
      rt,
      readdirSync(rt).find((n) => n.endsWith('.sock'))!,
    );
    const reply = await new Promise<string>((resolve) => {
      let text = '';
      const c = connect(sock, () => c.write('{"v":1,"argv":"apply","cwd":"/","env":{}}\n'));
      c.on('data', (d) => (text += d));
      c.on('close', () => resolve(text));
    });
    expect(
      reply
        .trim()
        .split('\n')
        .map((l) => JSON.parse(l)),
    ).toEqual([{ err: 'tula-dsr: agent daemon: argv must be a list of strings\n' }, { exit: 64 }]);
    // and it still serves
    expect((await provision(rt, terraformEnv(specText('be1')))).code).toBe(0);
  });
});

describe('runtimeDir', () => {
  test('accepts only a private folder of this user', () => {
    const base = mkdtempSync(join(lab.dir, 'perm-'));
    const ok = join(base, 'ok');
    expect(runtimeDir({ TULA_DSR_RUNTIME_DIR: ok })).toEqual({ dir: ok });
    expect(
      readdirSync(base, { withFileTypes: true })
        .find((e) => e.name === 'ok')
        ?.isDirectory(),
    ).toBe(true);

    const link = join(base, 'link');
    symlinkSync(ok, link);
    expect(runtimeDir({ TULA_DSR_RUNTIME_DIR: link })).toEqual({ problem: `${link} is not a directory (a symlink is not accepted)` });

    const foreign = join(base, 'foreign');
    mkdirSync(foreign, { mode: 0o700 });
    chownSync(foreign, 65534, 65534);
    expect(runtimeDir({ TULA_DSR_RUNTIME_DIR: foreign })).toEqual({ problem: `${foreign} belongs to uid 65534, not ${process.getuid!()}` });

    const open = join(base, 'open');
    mkdirSync(open);
    chmodSync(open, 0o750);
    expect(runtimeDir({ TULA_DSR_RUNTIME_DIR: open })).toEqual({ problem: `${open} is open to other users (mode 750); it must be 700` });
  });
});

test('a run whose caller went away applies nothing', async () => {
  const host = lab.hosts.be3;
  const spec = backendSpec(lab, host, [{ ip: vipOf(7) }]);
  const aborter = new AbortController();
  aborter.abort();
  const r = await run(spec, 'apply', { signal: aborter.signal });
  expect(r.error).toEqual({ kind: 'interrupted', message: 'the caller went away before any change was applied; nothing changed' });
  expect(await addresses(host, 'lo')).not.toContain(`${vipOf(7)}/32`);
});

describe('buildId', () => {
  test('a rebuild (files written anew) or an upgrade (npm: every file new, every mtime 1985-10-26) names another socket; the same files, the same name', () => {
    // the compiled module in a tree of its own, beside stand-ins for the code files it identifies
    const dist = join(mkdtempSync(join(lab.dir, 'build-')), 'dist');
    const code = ['agent/daemon/server.js', 'agent/daemon/protocol.js', 'agent/cli.js', 'agent/runner.js', 'model/index.js'];
    for (const f of ['agent/daemon/paths.js', 'model/scheduling.js', ...code]) {
      mkdirSync(dirname(join(dist, f)), { recursive: true });
      if (f.endsWith('paths.js') || f.endsWith('scheduling.js')) copyFileSync(join(REPO, 'dist', f), join(dist, f));
      else writeFileSync(join(dist, f), `// ${f}\n`);
    }
    const npmTime = new Date('1985-10-26T08:15:00Z');
    for (const f of code) utimesSync(join(dist, f), npmTime, npmTime);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { buildId } = require(join(dist, 'agent', 'daemon', 'paths.js')) as typeof import('../../agent/daemon/paths');
    const installed = buildId();
    expect(installed).toMatch(/^[0-9a-f]{16}$/);
    expect(buildId()).toBe(installed);

    // an upgrade with the same size and mtime: the file is new (npm extracts each one)
    const cli = join(dist, 'agent', 'cli.js');
    writeFileSync(`${cli}.new`, readFileSync(cli));
    utimesSync(`${cli}.new`, npmTime, npmTime);
    renameSync(`${cli}.new`, cli);
    const upgraded = buildId();
    expect(upgraded).not.toBe(installed);

    // a rebuild: tsc writes every output again
    writeFileSync(join(dist, 'model', 'index.js'), '// model/index.js, rebuilt\n');
    expect(buildId()).not.toBe(upgraded);
    expect(buildId()).toBe(buildId());
  });
});
