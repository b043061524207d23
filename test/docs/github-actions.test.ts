/**
 * The GitHub Actions workflow in docs/github-actions.md, run as far as it can be offline: its own `run:` scripts,
 * in the order it gives, with bash as Actions runs them, in a user's project folder. `npx cdktf synth` is the real
 * cdktf CLI on the example app, the plan the real terraform, the review the real CLI; only `gh` (the GitHub API) is
 * a stand-in that records each call and answers the comment list through the real jq with the workflow's filter.
 */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from '../../lab/exec';
import { assertFreshBuild, repoRoot } from '../../lab/l2/deploy';
import { REVIEW_MARKER } from '../../model/plan-review';
import { neutralise, terraformEnv, tf } from '../support/terraform';

jest.setTimeout(180_000);

const ROOT = repoRoot();

interface Step {
  readonly name: string;
  readonly run?: string;
}

/** The workflow's steps: `- name:` / `- uses:` entries and their `run:` scripts (one line, or a `|` block). */
function workflowSteps(markdown: string): Step[] {
  const yaml = /```yaml\n([\s\S]*?)```/.exec(markdown)?.[1];
  if (!yaml) throw new Error('docs/github-actions.md has no yaml block');
  const lines = yaml.split('\n');
  const steps: { name: string; run?: string }[] = [];
  lines.forEach((line, i) => {
    const start = /^ {6}- (?:name|uses): (.+)$/.exec(line);
    if (start) steps.push({ name: start[1] });
    const run = /^( {8})run: (.*)$/.exec(line);
    if (!run) return;
    if (run[2] !== '|') {
      steps[steps.length - 1].run = run[2];
      return;
    }
    const body: string[] = [];
    for (let j = i + 1; j < lines.length && (lines[j].startsWith(' '.repeat(10)) || lines[j] === ''); j++) body.push(lines[j].slice(10));
    steps[steps.length - 1].run = body.join('\n').trimEnd() + '\n';
  });
  return steps;
}

const STEPS = workflowSteps(readFileSync(path.join(ROOT, 'docs', 'github-actions.md'), 'utf8'));
const step = (name: string) => {
  const found = STEPS.find((s) => s.name === name);
  if (!found?.run) throw new Error(`the workflow has no step "${name}" with a run script`);
  return found.run;
};

/** A `gh` that records `api` calls, answers the comment list from $FAKE_GH_COMMENTS with jq, and keeps posted bodies. */
const FAKE_GH = `#!/bin/sh
set -eu
printf '%s\\n' "$*" >> "$FAKE_GH_LOG"
[ "$1" = api ] || { echo "fake gh: only api is supported" >&2; exit 1; }
shift
case "$*" in
  *--jq*)
    while [ "$1" != --jq ]; do shift; done
    jq -r "$2" "$FAKE_GH_COMMENTS" ;;
  *body=@*)
    for a in "$@"; do case "$a" in body=@*) cp "\${a#body=@}" "$FAKE_GH_LOG.body" ;; esac; done ;;
  *) echo "fake gh: unexpected call: $*" >&2; exit 1 ;;
esac
`;

let dir: string;
let project: string;
let env: Record<string, string>;
let tfEnv: NodeJS.ProcessEnv;
beforeAll(async () => {
  assertFreshBuild(ROOT);
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-workflow-'));
  project = path.join(dir, 'project');
  const bin = path.join(project, 'node_modules', '.bin');
  mkdirSync(bin, { recursive: true });
  // The user's project: its app (the repository's example), and node_modules as `npm ci` would leave them.
  for (const dep of ['cdktf', 'cdktf-cli', 'constructs']) symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(project, 'node_modules', dep), 'dir');
  symlinkSync(ROOT, path.join(project, 'node_modules', 'tula-dsr'), 'dir');
  symlinkSync(realpathSync(path.join(ROOT, 'node_modules', '.bin', 'cdktf')), path.join(bin, 'cdktf'));
  writeFileSync(path.join(bin, 'tula-dsr'), `#!/bin/sh\nexec ${process.execPath} ${path.join(ROOT, 'dist', 'agent', 'tula-dsr.js')} "$@"\n`);
  chmodSync(path.join(bin, 'tula-dsr'), 0o755);
  writeFileSync(path.join(project, 'cdktf.json'), JSON.stringify({ language: 'typescript', app: `${process.execPath} ${path.join(ROOT, 'dist', 'main.js')}` }));
  const tools = path.join(dir, 'tools');
  mkdirSync(tools);
  writeFileSync(path.join(tools, 'gh'), FAKE_GH);
  chmodSync(path.join(tools, 'gh'), 0o755);
  tfEnv = await terraformEnv(dir, 'terraform_data');
  env = {
    CI: 'true',
    PATH: `${tools}:${path.dirname(tfEnv.TERRAFORM_BIN!)}:${process.env.PATH}`,
    TF_CLI_CONFIG_FILE: tfEnv.TF_CLI_CONFIG_FILE!,
    CHECKPOINT_DISABLE: '1',
    // The example app without a provider download: the built-in terraform_data engine.
    TULA_DSR_ENGINE: 'terraform_data',
    GITHUB_REPOSITORY: 'acme/lb',
    GITHUB_OUTPUT: path.join(dir, 'github-output'),
    GH_TOKEN: 'not-a-token',
    PR: '7',
    FAKE_GH_LOG: path.join(dir, 'gh.log'),
    FAKE_GH_COMMENTS: path.join(dir, 'comments.json'),
    // the bin's code cache (scripts/agent-bin.js) goes under TMPDIR: this test's own folder, removed afterwards
    TMPDIR: dir,
  };
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** One `run:` script as GitHub Actions runs it: `bash --noprofile --norc -eo pipefail`, in the checkout. */
async function run(name: string, extraEnv: Record<string, string> = {}) {
  const r = await execFile(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '-c', step(name)], {
    cwd: project,
    env: { ...env, ...extraEnv },
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`step "${name}" exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`);
  return r;
}

/** Synthesize, plan, review, comment: the workflow's run steps after npm ci, with these weights of the example. */
async function pullRequestRun(weights: readonly number[], comments: readonly { id: number; body: string }[]) {
  writeFileSync(env.FAKE_GH_COMMENTS, JSON.stringify(comments));
  writeFileSync(env.FAKE_GH_LOG, '');
  writeFileSync(env.GITHUB_OUTPUT, '');
  const example = { TULA_DSR_EXAMPLE: JSON.stringify({ weights }) };
  await run('Synthesize', example);
  await run('Plan every stack');
  await run('Review');
  await run('Post or update the review comment');
  return {
    output: readFileSync(env.GITHUB_OUTPUT, 'utf8'),
    calls: readFileSync(env.FAKE_GH_LOG, 'utf8').trim().split('\n'),
    posted: readFileSync(`${env.FAKE_GH_LOG}.body`, 'utf8'),
    review: readFileSync(path.join(project, 'review.md'), 'utf8'),
  };
}

test('GIVEN the documented workflow WHEN its steps run for a first push, an applied stack with a change, and an unchanged one THEN it posts one comment and then updates it', async () => {
  expect(STEPS.map((s) => s.name)).toEqual([
    'actions/checkout@v4',
    'actions/setup-node@v4',
    'hashicorp/setup-terraform@v3',
    'Install',
    'Synthesize',
    'Plan every stack',
    'Review',
    'Post or update the review comment',
  ]);

  // First push: nothing applied yet, no comment of ours (someone else's comment is left alone).
  const first = await pullRequestRun([1, 2, 3], [{ id: 5, body: 'Looks good to me' }]);
  expect(first.output).toBe('changes=true\n');
  expect(first.calls).toEqual([
    'api --paginate repos/acme/lb/issues/7/comments --jq .[] | select(.body | startswith("<!-- tula-dsr plan review -->")) | .id',
    'api --method POST repos/acme/lb/issues/7/comments -F body=@review.md',
  ]);
  expect(first.posted).toBe(first.review);
  expect(first.posted.startsWith(`<!-- ${REVIEW_MARKER} -->\n`)).toBe(true);
  expect(first.posted).toContain('| `lb1` | balancer | create | new balancer with 3 VIPs |');

  // The stack gets applied (provisioners stubbed), then a push changes a weight: the comment is edited, not added.
  const stackDir = path.join(project, 'cdktf.out', 'stacks', 'dsr');
  neutralise(stackDir);
  await tf(stackDir, tfEnv, ['apply', '-input=false', '-auto-approve']);
  const ours = [
    { id: 5, body: 'Looks good to me' },
    { id: 42, body: first.posted },
  ];
  const second = await pullRequestRun([1, 2, 4], ours);
  expect(second.output).toBe('changes=true\n');
  expect(second.calls[1]).toBe('api --method PATCH repos/acme/lb/issues/comments/42 -F body=@review.md');
  expect(second.posted).toContain('| `lb1` | balancer | replace | VIP `web`: backend `web3`: weight 3 → 4 |');

  // A push that matches what is applied: the step reports no changes and the comment says so.
  const third = await pullRequestRun([1, 2, 3], ours);
  expect(third.output).toBe('changes=false\n');
  expect(third.calls[1]).toBe('api --method PATCH repos/acme/lb/issues/comments/42 -F body=@review.md');
  expect(third.posted).toContain('**No changes in 1 stack: the hosts already match the configuration.**');
});

test('GIVEN the Review step WHEN a plan cannot be read THEN the step fails with the review’s exit code and message', async () => {
  mkdirSync(path.join(project, 'plans'), { recursive: true });
  writeFileSync(path.join(project, 'plans', 'dsr.json'), '{"format_version":"2.0","resource_changes":[]}');
  const r = await execFile(['bash', '--noprofile', '--norc', '-eo', 'pipefail', '-c', step('Review')], { cwd: project, env, timeoutMs: 60_000 });
  expect(r.code).toBe(1);
  expect(r.stderr).toBe(
    'tula-dsr: plans/dsr.json: format_version "2.0" is not supported; tula-dsr review reads format 1.x (terraform show -json of Terraform 1.x)\n',
  );
});
