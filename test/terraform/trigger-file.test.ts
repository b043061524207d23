/**
 * Large triggers as files: past the inline limit a host resource's triggers are files beside cdk.tf.json that the
 * REAL terraform reads with `file()`. The values Terraform sees (plan, state, what the provisioners receive) are
 * those of the inline form, byte for byte, but for the spec, which Terraform stores compressed: it decompresses to
 * the same text, and the provisioners receive the same spec.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY } from '../../constructs';
import { ExampleStack } from '../../lab/example-stack';
import { DEFAULT_INVENTORY } from '../../lab/inventory';
import { readStackHosts, synthesizedTriggers } from '../../agent/spec-input';
import { COMPRESSED_SPEC_PREFIX, TRIGGER_FILES_DIR, specTextOfTrigger, triggersFileOf } from '../../model';
import { ENGINE_LIST } from '../support/stacks';
import { events, neutralise, synth, terraformEnv, tf } from '../support/terraform';

jest.setTimeout(90_000);

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

describe.each(ENGINE_LIST)('engine %s', (engine) => {
  const attribute = engine === 'null_resource' ? 'triggers' : 'triggers_replace';
  let dir: string;
  let env: NodeJS.ProcessEnv;
  const files = { [TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY]: 0 };
  /** Each host resource's attribute in cdk.tf.json, and its triggers as Terraform reads them. */
  const hostResources = (stackDir: string) => {
    const json = JSON.parse(readFileSync(path.join(stackDir, 'cdk.tf.json'), 'utf8')) as Json;
    return Object.entries(json.resource[engine] as Record<string, Json>).map(([name, r]) => ({
      name,
      attribute: r[attribute] as unknown,
      triggers: synthesizedTriggers(stackDir, r[attribute], `${engine}.${name}`),
    }));
  };
  const stateTriggers = async (stackDir: string): Promise<Record<string, Record<string, string>>> => {
    const state = JSON.parse((await tf(stackDir, env, ['show', '-json'])).stdout) as Json;
    return Object.fromEntries((state.values.root_module.resources as Json[]).map((r) => [r.address, r.values[attribute]]));
  };
  /** Triggers with the spec as its JSON, however Terraform stores it. */
  const withSpecText = (triggers: Record<string, string>) => {
    const spec = specTextOfTrigger(triggers.spec);
    return { ...triggers, spec: 'text' in spec ? spec.text : spec.problem };
  };
  /** A resource's trigger files, sorted: the map and the spec, named after a hash of both. */
  const filesOf = (r: { attribute: unknown }) => {
    const files = triggersFileOf(r.attribute)!;
    return [files.triggers, files.spec].map((f) => path.posix.basename(f)).sort();
  };

  // the example stack keeps its state beside its outdir: one folder per form
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-tf-files-'));
    for (const form of ['inline', 'files']) mkdirSync(path.join(dir, form));
    env = await terraformEnv(dir, engine);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  test('GIVEN the example stack synthesized inline and with every trigger map in a file WHEN terraform applies each THEN state and provisioners get the same values', async () => {
    const inlineDir = synth(path.join(dir, 'inline', 'out'), engine, example());
    const fileDir = synth(path.join(dir, 'files', 'out'), engine, example(), files);
    const inline = hostResources(inlineDir);
    const fromFiles = hostResources(fileDir);
    expect(inline.length).toBeGreaterThanOrEqual(4);
    for (const r of inline) expect(typeof r.attribute).toBe('object');
    for (const r of fromFiles) {
      const files = triggersFileOf(r.attribute);
      const name = `^${TRIGGER_FILES_DIR}/${r.name}/([0-9a-f]{16})`;
      expect([r.name, files]).toEqual([
        r.name,
        { triggers: expect.stringMatching(new RegExp(`${name}\\.json$`)), spec: expect.stringMatching(new RegExp(`${name}\\.spec\\.json$`)) },
      ]);
      expect(files!.spec.replace('.spec', '')).toBe(files!.triggers);
      for (const file of [files!.triggers, files!.spec]) expect(existsSync(path.join(fileDir, file))).toBe(true);
    }
    expect(fromFiles.map((r) => [r.name, r.triggers])).toEqual(inline.map((r) => [r.name, r.triggers]));
    // what `tula-dsr check|apply|stats STACK_DIR` reads
    expect(readStackHosts(fileDir)).toEqual(readStackHosts(inlineDir));
    expect(readStackHosts(fileDir).map((h) => h.kind)).toEqual(expect.arrayContaining(['balancer', 'backend']));
    // the ruleset holds nft's `${…}`-free text, but the spec trigger must survive any text: the file is not a template
    for (const stackDir of [inlineDir, fileDir]) {
      neutralise(stackDir);
      await tf(stackDir, env, ['init', '-input=false']);
      await tf(stackDir, env, ['apply', '-auto-approve', '-input=false']);
    }
    const inlineState = await stateTriggers(inlineDir);
    const fileState = await stateTriggers(fileDir);
    // the state holds the spec compressed, much smaller than its JSON, and decompressed the same text
    for (const [address, triggers] of Object.entries(fileState)) {
      expect([address, triggers.spec.slice(0, 4)]).toEqual([address, COMPRESSED_SPEC_PREFIX]);
      expect(triggers.spec.length).toBeLessThan(inlineState[address].spec.length);
    }
    expect(Object.values(inlineState).every((t) => t.spec.startsWith('{'))).toBe(true);
    expect(Object.fromEntries(Object.entries(fileState).map(([a, t]) => [a, withSpecText(t)]))).toEqual(inlineState);
    expect((await events(fileDir)).sort()).toEqual((await events(inlineDir)).sort());
    expect((await events(fileDir)).length).toBe(inline.length);
  });

  test('GIVEN an applied inline stack WHEN it is synthesized again with its triggers in files THEN terraform replaces each host once, for the spec stored compressed: same hash, same review, same spec text', async () => {
    const outdir = path.join(dir, 'inline', 'out');
    const stackDir = synth(outdir, engine, example(), files);
    for (const r of hostResources(stackDir)) expect(triggersFileOf(r.attribute)).not.toBeNull();
    neutralise(stackDir);
    await tf(stackDir, env, ['plan', '-input=false', '-out=files.tfplan']);
    const plan = JSON.parse((await tf(stackDir, env, ['show', '-json', 'files.tfplan'])).stdout) as Json;
    const changes = (plan.resource_changes as Json[]).filter((c) => c.type === engine);
    expect(changes.length).toBeGreaterThanOrEqual(4);
    for (const change of changes) {
      const [before, after] = [change.change.before[attribute], change.change.after[attribute]] as Record<string, string>[];
      expect([change.address, after.spec.slice(0, 4)]).toEqual([change.address, COMPRESSED_SPEC_PREFIX]);
      expect(withSpecText(after)).toEqual(before);
    }
    const applied = await events(stackDir);
    expect(applied.filter((e) => e.startsWith('apply ')).length).toBe(changes.length);
    await tf(stackDir, env, ['apply', '-input=false', 'files.tfplan']);
    // the provisioners of the new objects got the same specs as those of the old ones (the events hash what they got)
    const replaced = (await events(stackDir)).slice(applied.length);
    expect(replaced.filter((e) => e.startsWith('apply ')).sort()).toEqual(applied.filter((e) => e.startsWith('apply ')).sort());
    const again = await tf(stackDir, env, ['plan', '-input=false', '-detailed-exitcode'], [0, 2]);
    expect([again.code, again.stdout]).toEqual([0, expect.stringContaining('No changes.')]);
  });

  test('GIVEN a weight change WHEN synthesized again in files THEN the balancer gets a new file, its old one is gone, and the plan shows the changed slot lines and replaces the balancer only', async () => {
    const stackDir = synth(path.join(dir, 'files', 'out'), engine, example([1, 2, 4]), files);
    const lb = hostResources(stackDir).find((r) => r.name.startsWith('lb1_host_'))!;
    expect(readdirSync(path.join(stackDir, TRIGGER_FILES_DIR, lb.name)).sort()).toEqual(filesOf(lb));
    neutralise(stackDir);
    const plan = await tf(stackDir, env, ['plan', '-input=false', '-detailed-exitcode'], [2]);
    expect(plan.stdout).toMatch(new RegExp(`# ${engine}\\.lb1_host_[0-9A-F]{8} must be replaced`));
    expect(plan.stdout).toMatch(/Plan: 1 to add, 0 to change, 1 to destroy\./);
    expect(plan.stdout).toMatch(/^ *[-+] *# pool [0-9a-f]+:[0-9a-f]+ of web: weighted-round-robin over .*×4$/m);
  });
});

test('GIVEN an inline limit that is not a number of bytes WHEN synthesized THEN the stack reports the context key, the value and what is allowed', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-tf-files-'));
  try {
    expect(() => synth(path.join(dir, 'out'), 'terraform_data', example(), { [TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY]: '64k' })).toThrow(
      /context tula-dsr:triggers-inline-max-bytes.*"64k" is not a number of bytes; use a whole number ≥ 0 \(default 65536\)/s,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('GIVEN a host resource whose triggers are an expression this version does not read WHEN the CLI reads the stack THEN it names the resource and says to synthesize again, instead of leaving the host out', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tula-dsr-tf-files-'));
  try {
    const stackDir = synth(path.join(dir, 'out'), 'terraform_data', example(), { [TRIGGERS_INLINE_MAX_BYTES_CONTEXT_KEY]: 0 });
    const file = path.join(stackDir, 'cdk.tf.json');
    const json = JSON.parse(readFileSync(file, 'utf8')) as Json;
    const [name, lb] = Object.entries(json.resource.terraform_data as Record<string, Json>).find(([n]) => n.startsWith('lb1_host_'))!;
    // the single-file form an earlier version wrote
    lb.triggers_replace = `\${jsondecode(file("\${path.module}/${TRIGGER_FILES_DIR}/${name}/0123456789abcdef.json"))}`;
    writeFileSync(file, JSON.stringify(json));
    expect(() => readStackHosts(stackDir)).toThrow(
      `terraform_data.${name}: triggers: are in a form this version of tula-dsr does not read; run \`cdktf synth\` again`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function example(weights?: number[]) {
  return (app: Parameters<Parameters<typeof synth>[2]>[0]) => new ExampleStack(app, 'dsr', DEFAULT_INVENTORY, weights ? { weights } : {});
}
