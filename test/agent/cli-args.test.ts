/**
 * The command line: each command group's own options (apply/check/remove share theirs; review has its own), the
 * usage text that comes from the same tables, and `tula-dsr review`'s exit codes run in process.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../agent/cli';
import { EXIT, USAGE, parseCliArgs } from '../../agent/cli-args';
import type { CliIo } from '../../agent/io';

describe('parseCliArgs', () => {
  test('GIVEN apply with a stack folder and options WHEN parsed THEN the host command gets them', () => {
    expect(parseCliArgs(['apply', 'cdktf.out/stacks/dsr', '--diff', '--timeout', '5', '--limit', 'web1,balancer'], {})).toEqual({
      command: 'apply',
      mode: 'apply',
      stack: 'cdktf.out/stacks/dsr',
      specFile: undefined,
      diff: true,
      json: false,
      timeoutMs: 5000,
      limit: ['web1', 'balancer'],
    });
  });

  test('GIVEN review with plans and options WHEN parsed THEN review gets them', () => {
    expect(parseCliArgs(['review', 'a.json', 'b.json', '--format', 'text', '--max-chars', '30000'], {})).toEqual({
      command: 'review',
      plans: ['a.json', 'b.json'],
      format: 'text',
      maxChars: 30000,
    });
    expect(parseCliArgs(['review', '-'], {})).toEqual({ command: 'review', plans: ['-'], format: 'markdown', maxChars: undefined });
  });

  test.each<[string, string[], string]>([
    ['no plan', ['review'], 'review needs a plan: PLAN_JSON (terraform show -json PLAN > plan.json), or - for standard input'],
    ['stdin and a file', ['review', '-', 'a.json'], "'-' (standard input) cannot be combined with files"],
    ['an unknown format', ['review', 'a.json', '--format', 'html'], '--format "html" is not supported; use markdown or text'],
    ['a limit too small to hold a summary', ['review', 'a.json', '--max-chars', '500'], '--max-chars "500" is not allowed; use an integer of at least 2000'],
    ['a limit that is not a number', ['review', 'a.json', '--max-chars', 'lots'], '--max-chars "lots" is not allowed; use an integer of at least 2000'],
    ["another command's option", ['review', 'a.json', '--diff'], "Unknown option '--diff'"],
    ["review's option on apply", ['apply', '--format', 'text'], "Unknown option '--format'"],
    ['an unknown command', ['plan'], 'unknown command "plan"'],
  ])('GIVEN %s WHEN parsed THEN it is a usage error with this message', (_what, argv, message) => {
    expect(parseCliArgs(argv, {})).toBe(message);
  });

  test('GIVEN the usage text THEN it lists every command, each group with its options, and its exit codes', () => {
    expect(USAGE).toMatch(/^ {2}review PLAN_JSON\.\.\. \| - +summarise a Terraform plan of tula-dsr hosts for a pull request$/m);
    expect(USAGE).toMatch(/^apply, check, remove:$/m);
    expect(USAGE).toMatch(/^review:$/m);
    expect(USAGE).toMatch(/^ {2}--format markdown\|text +markdown for a pull-request comment \(default\), text for a terminal$/m);
    expect(USAGE).toContain('  exit codes: 0 no changes, 2 changes, 1 unreadable plan, 64 usage error');
    expect(USAGE).toContain('  exit codes: 0 ok (check: in sync), 1 failure, 2 check found drift, 64 usage error');
  });
});

describe('tula-dsr review exit codes', () => {
  let dir: string;
  beforeAll(() => (dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-review-cli-'))));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function io(stdin?: string): CliIo & { out: string; err: string } {
    const sink = {
      out: '',
      err: '',
      env: {},
      cwd: dir,
      stdout: (t: string) => (sink.out += t),
      stderr: (t: string) => (sink.err += t),
      stdin: stdin === undefined ? undefined : async () => stdin,
    };
    return sink;
  }

  const planWith = (actions: string[]) =>
    JSON.stringify({ format_version: '1.2', resource_changes: [{ address: 'aws_instance.vm', type: 'aws_instance', change: { actions } }] });

  test.each<[string, string, number]>([
    ['no changes', planWith(['no-op']), EXIT.ok],
    ['a change to any resource', planWith(['create']), EXIT.changes],
  ])('GIVEN a plan with %s WHEN reviewed THEN the exit code says so', async (_what, text, code) => {
    writeFileSync(path.join(dir, 'plan.json'), text);
    const sink = io();
    expect(await main(['review', 'plan.json'], sink)).toBe(code);
    expect(sink.err).toBe('');
    expect(sink.out.startsWith('<!-- tula-dsr plan review -->\n')).toBe(true);
  });

  test('GIVEN a plan on standard input WHEN reviewed with - THEN it is read from there', async () => {
    const sink = io(planWith(['delete']));
    expect(await main(['review', '-', '--format', 'text'], sink)).toBe(EXIT.changes);
    expect(sink.out).toContain('Other resources in this plan: aws_instance.vm (destroy)');
  });

  test.each<[string, string[], () => ReturnType<typeof io>, string]>([
    ['a missing file', ['review', 'missing.json'], () => io(), 'tula-dsr: missing.json: cannot read the plan (no such file)\n'],
    [
      '- where there is no standard input (the agent daemon)',
      ['review', '-'],
      () => io(),
      "tula-dsr: -: standard input is not available here; give the plan's JSON file instead\n",
    ],
    [
      'a plan of another format',
      ['review', '-'],
      () => io('{"format_version":"2.1"}'),
      'tula-dsr: -: format_version "2.1" is not supported; tula-dsr review reads format 1.x (terraform show -json of Terraform 1.x)\n',
    ],
  ])('GIVEN %s WHEN reviewed THEN it exits 1 with the reason', async (_what, argv, makeIo, message) => {
    const sink = makeIo();
    expect(await main(argv, sink)).toBe(EXIT.failed);
    expect(sink.err).toBe(message);
    expect(sink.out).toBe('');
  });
});
