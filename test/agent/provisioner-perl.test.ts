/**
 * The provisioner command Terraform runs (constructs/host-resource.ts agentCommand), run here exactly as Terraform
 * runs it: `/bin/sh -c COMMAND` in the stack folder, the spec in the environment. Where perl is at hand its client
 * (agent/daemon/client.pl) hands the run to the agent daemon through a door named after the installed package;
 * these tests show that a user sees the same results, output and exit codes as from the node loader, that a daemon
 * of other code is replaced, and that every case the perl client does not handle itself still runs, through node.
 */
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { join, relative } from 'node:path';
import { gzipSync } from 'node:zlib';
import { execFile, ExecResult } from '../../lab/exec';
import { createLab, Lab } from '../../lab/topology';
import { processRunning, stopAgentDaemons } from '../../lab/agent-daemons';
import { agentCommand } from '../../constructs/host-resource';
import { REPO, addresses, assertDistFresh, backendSpec, sleep } from './helpers';

jest.setTimeout(60_000);

let lab: Lab;
let stackDir: string;
let runtimes = 0;

beforeAll(async () => {
  assertDistFresh();
  const perl = await execFile(['perl', '-MSocket', '-MCwd', '-e', 'print "ok"']);
  if (perl.stdout !== 'ok') throw new Error(`these tests need perl (Debian's perl-base): ${perl.stderr}`);
  lab = await createLab({ hosts: [{ name: 'be1' }] });
  // where cdktf writes a stack: the command names the project relative to it
  stackDir = join(lab.dir, 'cdktf.out', 'stacks', 'web');
  mkdirSync(stackDir, { recursive: true });
});

afterAll(async () => {
  if (lab) for (const name of readdirSync(lab.dir).filter((n) => n.startsWith('rt'))) await stopAgentDaemons(join(lab.dir, name));
  await lab?.teardown();
});

function runtimeFolder(): string {
  const dir = join(lab.dir, `rt${++runtimes}`);
  mkdirSync(dir, { mode: 0o700 });
  return dir;
}

const vipOf = (n: number) => lab.subnet.replace(/\.0\/24$/, `.${200 + n}`);
const specText = (n = 0) => JSON.stringify(backendSpec(lab, lab.hosts.be1, [{ ip: vipOf(n) }]));
const terraformEnv = (text: string) => ({ TULA_DSR_SPEC_GZ_0: gzipSync(text).toString('base64') });

/** The provisioner command as Terraform runs it, for the project `project` (REPO: this checkout is tula-dsr). */
function provision(runtime: string, env: Record<string, string>, project = REPO): Promise<ExecResult> {
  const command = agentCommand('apply', relative(stackDir, project));
  return execFile(['/bin/sh', '-c', command], { env: { TULA_DSR_RUNTIME_DIR: runtime, ...env }, cwd: stackDir, timeoutMs: 45_000 });
}

const doors = (dir: string) => readdirSync(dir).filter((n) => /^agent-door-\d+-\d+\.sock$/.test(n));
const nodeSockets = (dir: string) => readdirSync(dir).filter((n) => /^agent-[0-9a-f]{16}\.sock$/.test(n));
const daemonPid = (dir: string) => Number(readFileSync(join(dir, `${doors(dir)[0]}.pid`), 'utf8'));
const recap = (out: string) => /ok=(\d+) changed=(\d+) failed=(\d+)/.exec(out)?.slice(1).map(Number);
const tasks = (out: string) => out.split('\n').filter((l) => /^(ok|changed|failed|skipped): /.test(l));

test('GIVEN perl WHEN Terraform runs the provisioner command THEN the perl client hands the run to the daemon, with the results the node loader gives', async () => {
  const rt = runtimeFolder();
  const first = await provision(rt, terraformEnv(specText()));
  if (first.code !== 0) throw new Error(`exit ${first.code}\n${first.stderr}\n${first.stdout}`);
  expect(recap(first.stdout)?.[1]).toBeGreaterThan(0);
  expect(await addresses(lab.hosts.be1, 'lo')).toContain(`${vipOf(0)}/32`);
  // the door is the perl client's alone, and no node client ran
  const st = statSync(REPO);
  expect(doors(rt)).toEqual([`agent-door-${st.dev}-${st.ino}.sock`]);
  expect(nodeSockets(rt)).toEqual([]);

  const viaPerl = await provision(rt, terraformEnv(specText()));
  const viaNode = await provision(rt, { ...terraformEnv(specText()), TULA_DSR_DAEMON: '0' });
  expect(viaPerl.code).toBe(0);
  expect(viaNode.code).toBe(0);
  expect(recap(viaPerl.stdout)).toEqual(recap(viaNode.stdout));
  expect(tasks(viaPerl.stdout).length).toBeGreaterThan(0);
  expect(tasks(viaPerl.stdout)).toEqual(tasks(viaNode.stdout));
  expect(viaPerl.stderr).toEqual(viaNode.stderr);
});

test('GIVEN bad input WHEN the perl client relays the run THEN output and exit code are byte for byte those of the agent run in process', async () => {
  const rt = runtimeFolder();
  // a name with a tab, a quote, a backslash and non-ASCII letters: it is echoed back in the error
  const bad = JSON.parse(specText()) as { name: string; services: { ip: string }[] };
  bad.name = 'wéb\t"1"\\ü';
  bad.services[0].ip = '10.0.0.300';
  const cases: Record<string, string>[] = [terraformEnv(JSON.stringify(bad)), {}];
  for (const env of cases) {
    const viaPerl = await provision(rt, env);
    const inProcess = await provision(rt, { ...env, TULA_DSR_DAEMON: '0' });
    expect(viaPerl.code).not.toBe(0);
    // all but the run's duration in the recap
    const seen = (r: ExecResult) => ({ code: r.code, stdout: r.stdout.replace(/\(\d+ ms/g, '(N ms'), stderr: r.stderr });
    expect(seen(viaPerl)).toEqual(seen(inProcess));
    expect(viaPerl.stdout + viaPerl.stderr).not.toMatch(/^\s+at .+:\d+:\d+\)?$/m);
  }
  const badOut = await provision(rt, cases[0]);
  expect(badOut.stdout + badOut.stderr).toContain('10.0.0.300');
  expect(badOut.stdout + badOut.stderr).toContain('wéb');
  expect(doors(rt)).toHaveLength(1);
});

test('GIVEN a daemon of the code before a rebuild WHEN a provisioner comes THEN that daemon answers stale and stops, and a fresh one runs the apply', async () => {
  const rt = runtimeFolder();
  expect((await provision(rt, terraformEnv(specText(1)))).code).toBe(0);
  const old = daemonPid(rt);
  // a rebuild writes every compiled file anew: one of the files the build id stands on gets a new mtime
  const file = join(REPO, 'dist', 'agent', 'daemon', 'protocol.js');
  const before = statSync(file);
  utimesSync(file, before.atime, new Date(before.mtimeMs + 2000));
  try {
    const r = await provision(rt, terraformEnv(specText(2)));
    if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stderr}\n${r.stdout}`);
    expect(r.stderr).not.toMatch(/daemon unavailable/);
    expect(await addresses(lab.hosts.be1, 'lo')).toContain(`${vipOf(2)}/32`);
    const deadline = Date.now() + 10_000;
    while (processRunning(old) && Date.now() < deadline) await sleep(50);
    expect(processRunning(old)).toBe(false);
    expect(daemonPid(rt)).not.toBe(old);
    expect(readFileSync(join(rt, 'daemon.log'), 'utf8')).toMatch(/stopped: stale: the agent was rebuilt or upgraded since this daemon started/);
  } finally {
    utimesSync(file, before.atime, before.mtime);
  }
});

test('GIVEN a caller that left a descriptor open (as Terraform passes on its own caller’s) WHEN the perl client starts the daemon THEN the daemon keeps none of them, and the caller sees the end of its pipes when the provisioner exits', async () => {
  const rt = runtimeFolder();
  const command = agentCommand('apply', relative(stackDir, REPO));
  const env = { ...process.env, TULA_DSR_RUNTIME_DIR: rt, TULA_DSR_DAEMON_IDLE_MS: '120000', ...terraformEnv(specText()) };
  // 'close' comes only once every holder of the child's stdout, stderr and descriptor 3 has let go
  const started = Date.now();
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('/bin/sh', ['-c', command], { cwd: stackDir, env, stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    const timer = setTimeout(() => reject(new Error('the provisioner’s pipes were still open after 20 s: the daemon holds them')), 20_000);
    child.on('close', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  expect(code).toBe(0);
  expect(Date.now() - started).toBeLessThan(20_000);
  expect(doors(rt)).toHaveLength(1);
  await stopAgentDaemons(rt);
});

describe('what the perl client leaves to the node loader', () => {
  test('GIVEN TULA_DSR_DAEMON=0 THEN the agent runs in the provisioner’s own node process, and no daemon starts', async () => {
    const rt = runtimeFolder();
    const r = await provision(rt, { ...terraformEnv(specText()), TULA_DSR_DAEMON: '0' });
    expect(r.code).toBe(0);
    expect(recap(r.stdout)?.[2]).toBe(0);
    expect(readdirSync(rt)).toEqual([]);
  });

  test('GIVEN no perl on PATH THEN the node loader runs, through its own daemon socket', async () => {
    const rt = runtimeFolder();
    const bin = mkdtempSync(join(lab.dir, 'bin-'));
    symlinkSync(process.execPath, join(bin, 'node'));
    const r = await provision(rt, { ...terraformEnv(specText()), PATH: bin });
    if (r.code !== 0) throw new Error(`exit ${r.code}\n${r.stderr}\n${r.stdout}`);
    expect(recap(r.stdout)?.[2]).toBe(0);
    expect(doors(rt)).toEqual([]);
    expect(nodeSockets(rt)).toHaveLength(1);
  });

  test('GIVEN a runtime folder other users can enter THEN the node loader says so and runs the agent itself', async () => {
    const rt = runtimeFolder();
    chmodSync(rt, 0o777);
    const r = await provision(rt, terraformEnv(specText()));
    expect(r.stderr).toMatch(/agent daemon unavailable \(.*is open to other users \(mode 777\); it must be 700\); running the agent in this process/);
    expect(r.code).toBe(0);
    expect(readdirSync(rt)).toEqual([]);
  });
});
