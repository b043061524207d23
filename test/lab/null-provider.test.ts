/**
 * The offline hashicorp/null stand-in (lab/terraform/null-provider) driven by the REAL terraform
 * binary: init from the filesystem mirror, validate, plan, apply, replace, provisioners, unknowns,
 * destroy. Every test gets its own temp dir and removes it afterwards.
 */
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { prepareTerraformEnv, runTerraform, TerraformEnv, TerraformResult } from '../../lab/terraform/env';

jest.setTimeout(120_000);

const REQUIRED_PROVIDERS = `
terraform {
  required_providers {
    null = {
      source  = "hashicorp/null"
      version = "3.2.4"
    }
  }
}
`;

let dir: string;
let tfEnv: TerraformEnv;

beforeEach(async () => {
  dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'tula-null-provider-test-'));
  tfEnv = await prepareTerraformEnv(dir, { providerLog: true });
});

afterEach(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

/** Run terraform in the test dir; fail with the full output unless the exit code is one of `okCodes`. */
async function tf(args: string[], okCodes: number[] = [0]): Promise<TerraformResult> {
  const res = await runTerraform([...args], { cwd: dir, env: tfEnv.env });
  if (!okCodes.includes(res.code ?? -1)) {
    throw new Error(`terraform ${args.join(' ')} exited ${res.code}\n--- stdout\n${res.stdout}\n--- stderr\n${res.stderr}`);
  }
  return res;
}

async function writeConfig(hcl: string): Promise<void> {
  await fsp.writeFile(path.join(dir, 'main.tf'), REQUIRED_PROVIDERS + hcl);
}

/** Lines the provisioners appended to events.log (they run through /bin/sh). */
async function events(): Promise<string[]> {
  try {
    return (await fsp.readFile(path.join(dir, 'events.log'), 'utf8')).split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** The part of `terraform show -json` these tests read: a null_resource's id and triggers. */
interface NullResourceValues {
  id: string;
  triggers?: Record<string, string>;
}
interface ShowJson {
  values?: { root_module?: { resources?: { address: string; values: NullResourceValues }[] } };
}

async function stateJson(): Promise<ShowJson> {
  const res = await tf(['show', '-json', '-no-color']);
  return JSON.parse(res.stdout) as ShowJson;
}

function resourceValues(state: ShowJson, address: string): NullResourceValues | undefined {
  return state.values?.root_module?.resources?.find((x) => x.address === address)?.values;
}

/** A null_resource whose provisioners log create and destroy, keyed by a `gen` trigger. */
function loggedResource(name: string, opts: { cbd: boolean }): string {
  const log = JSON.stringify(path.join(dir, 'events.log'));
  return `
variable "gen" {
  type    = string
  default = "1"
}

resource "null_resource" "${name}" {
  triggers = {
    gen  = var.gen
    host = "10.0.0.1"
  }

  provisioner "local-exec" {
    command = "echo create gen=\${self.triggers.gen} id=\${self.id} >> ${log.slice(1, -1)}"
  }

  provisioner "local-exec" {
    when    = destroy
    command = "echo destroy gen=\${self.triggers["gen"]} host=\${self.triggers["host"]} >> ${log.slice(1, -1)}"
  }
${opts.cbd ? '\n  lifecycle {\n    create_before_destroy = true\n  }\n' : ''}}
`;
}

describe('offline hashicorp/null stand-in with the real terraform binary', () => {
  test('init installs hashicorp/null 3.2.4 from the filesystem mirror, validate passes, schema matches null 3.2.4', async () => {
    await writeConfig('resource "null_resource" "a" {}\n');

    const init = await tf(['init', '-input=false', '-no-color']);
    expect(init.stdout).toMatch(/Installing hashicorp\/null v3\.2\.4/);
    expect(init.stdout).toMatch(/Terraform has been successfully initialized/);
    const lock = await fsp.readFile(path.join(dir, '.terraform.lock.hcl'), 'utf8');
    expect(lock).toMatch(/provider "registry\.terraform\.io\/hashicorp\/null"[\s\S]*version\s*=\s*"3\.2\.4"/);
    // The CLI config we wrote is the one in use: no warning about a missing config file.
    expect(init.stderr).not.toMatch(/Unable to open CLI configuration file/);

    const validate = await tf(['validate', '-no-color']);
    expect(validate.stdout).toMatch(/Success! The configuration is valid\./);

    const schema = JSON.parse((await tf(['providers', 'schema', '-json'])).stdout);
    const null_ = schema.provider_schemas['registry.terraform.io/hashicorp/null'];
    const res = null_.resource_schemas.null_resource;
    expect(res.version).toBe(0);
    expect(res.block.attributes.id).toMatchObject({ type: 'string', computed: true });
    expect(res.block.attributes.id.optional).toBeUndefined();
    expect(res.block.attributes.triggers).toMatchObject({ type: ['map', 'string'], optional: true });
    expect(Object.keys(res.block.attributes).sort()).toEqual(['id', 'triggers']);
    expect(Object.keys(null_.data_source_schemas)).toEqual(['null_data_source']);
  });

  test('validate reports a bad attribute through the provider schema', async () => {
    await writeConfig('resource "null_resource" "a" {\n  triggers = { a = "1" }\n  nope = "x"\n}\n');
    await tf(['init', '-input=false', '-no-color']);
    const res = await tf(['validate', '-no-color'], [1]);
    expect(res.stderr).toMatch(/Unsupported argument/);
    expect(res.stderr).toMatch(/"nope" is not expected here/);
  });

  test('plan, apply with a create provisioner, no-op re-plan, trigger change forces +/- replacement, destroy runs the destroy provisioner', async () => {
    await writeConfig(loggedResource('host', { cbd: true }));
    await tf(['init', '-input=false', '-no-color']);

    const plan = await tf(['plan', '-input=false', '-no-color', '-out=create.tfplan']);
    expect(plan.stdout).toMatch(/# null_resource\.host will be created/);
    expect(plan.stdout).toMatch(/\+ id\s+= \(known after apply\)/);
    expect(plan.stdout).toMatch(/\+ "gen"\s+= "1"/);
    expect(plan.stdout).toMatch(/Plan: 1 to add, 0 to change, 0 to destroy\./);

    const apply = await tf(['apply', '-input=false', '-no-color', 'create.tfplan']);
    expect(apply.stdout).toMatch(/null_resource\.host: Creation complete after \S+ \[id=\d+\]/);
    expect(apply.stdout).toMatch(/Apply complete! Resources: 1 added, 0 changed, 0 destroyed\./);
    const id1 = resourceValues(await stateJson(), 'null_resource.host')!.id;
    expect(id1).toMatch(/^\d+$/); // like the real provider: a random int as a decimal string
    expect(await events()).toEqual([`create gen=1 id=${id1}`]);

    // Nothing changed: no diff, exit code 0 with -detailed-exitcode.
    const replan = await tf(['plan', '-input=false', '-no-color', '-detailed-exitcode']);
    expect(replan.stdout).toMatch(/No changes\. Your infrastructure matches the configuration\./);

    // Changing a trigger forces replacement; with create_before_destroy it is "+/-".
    const change = await tf(['plan', '-input=false', '-no-color', '-var', 'gen=2', '-detailed-exitcode', '-out=replace.tfplan'], [2]);
    expect(change.stdout).toMatch(/# null_resource\.host must be replaced/);
    expect(change.stdout).toMatch(/\+\/- resource "null_resource" "host"/);
    expect(change.stdout).toMatch(new RegExp(`~ id\\s+= "${id1}" -> \\(known after apply\\)`));
    expect(change.stdout).toMatch(/~ triggers = \{ # forces replacement/);
    expect(change.stdout).toMatch(/~ "gen"\s+= "1" -> "2"/);
    expect(change.stdout).toMatch(/Plan: 1 to add, 0 to change, 1 to destroy\./);

    const replace = await tf(['apply', '-input=false', '-no-color', 'replace.tfplan']);
    expect(replace.stdout).toMatch(/Apply complete! Resources: 1 added, 0 changed, 1 destroyed\./);
    const id2 = resourceValues(await stateJson(), 'null_resource.host')!.id;
    expect(id2).toMatch(/^\d+$/);
    expect(id2).not.toBe(id1);
    // Terraform 1.11 fact (not a provider choice): the deposed object of a create_before_destroy
    // replacement is destroyed WITHOUT running its destroy-time provisioners.
    expect(await events()).toEqual([`create gen=1 id=${id1}`, `create gen=2 id=${id2}`]);

    const destroy = await tf(['destroy', '-input=false', '-no-color', '-auto-approve', '-var', 'gen=2']);
    expect(destroy.stdout).toMatch(/null_resource\.host: Destruction complete/);
    expect(destroy.stdout).toMatch(/Destroy complete! Resources: 1 destroyed\./);
    expect((await events()).slice(2)).toEqual(['destroy gen=2 host=10.0.0.1']);
    expect(resourceValues(await stateJson(), 'null_resource.host')).toBeUndefined();

    // The provider really was asked: RequiresReplace came from PlanResourceChange.
    const rpc = (await fsp.readFile(tfEnv.providerLogPath!, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(rpc.some((e) => e.rpc === 'PlanResourceChange' && JSON.stringify(e.requires_replace) === '[["triggers"]]')).toBe(true);
    expect(rpc.filter((e) => e.rpc === 'ApplyResourceChange').map((e) => e.action)).toEqual(['create', 'create', 'delete', 'delete']);
  });

  test('without create_before_destroy a trigger change is -/+ and the old object destroy provisioner reads its own triggers', async () => {
    await writeConfig(loggedResource('host', { cbd: false }));
    await tf(['init', '-input=false', '-no-color']);
    await tf(['apply', '-input=false', '-no-color', '-auto-approve']);

    const change = await tf(['plan', '-input=false', '-no-color', '-var', 'gen=2']);
    expect(change.stdout).toMatch(/-\/\+ resource "null_resource" "host"/);
    expect(change.stdout).toMatch(/~ triggers = \{ # forces replacement/);

    await tf(['apply', '-input=false', '-no-color', '-auto-approve', '-var', 'gen=2']);
    const ev = await events();
    expect(ev).toHaveLength(3);
    expect(ev[0]).toMatch(/^create gen=1 id=\d+$/);
    expect(ev[1]).toBe('destroy gen=1 host=10.0.0.1'); // the OLD object's triggers, destroyed first
    expect(ev[2]).toMatch(/^create gen=2 id=\d+$/);
  });

  test('a trigger that references another null_resource id is (known after apply) in the plan and resolved at apply', async () => {
    const config = (v: string) => `
resource "null_resource" "first" {
  triggers = { v = "${v}" }
}

resource "null_resource" "second" {
  triggers = {
    first_id = null_resource.first.id
    prefixed = "gen-\${null_resource.first.id}"
    fixed    = "x"
  }
}
`;
    await writeConfig(config('1'));
    await tf(['init', '-input=false', '-no-color']);

    const plan = await tf(['plan', '-input=false', '-no-color']);
    expect(plan.stdout).toMatch(/\+ "first_id" = \(known after apply\)/);
    expect(plan.stdout).toMatch(/\+ "prefixed" = \(known after apply\)/);
    expect(plan.stdout).toMatch(/\+ "fixed"\s+= "x"/);
    expect(plan.stdout).toMatch(/Plan: 2 to add, 0 to change, 0 to destroy\./);

    await tf(['apply', '-input=false', '-no-color', '-auto-approve']);
    const state = await stateJson();
    const firstId = resourceValues(state, 'null_resource.first')!.id;
    expect(resourceValues(state, 'null_resource.second')!.triggers).toEqual({ first_id: firstId, prefixed: `gen-${firstId}`, fixed: 'x' });

    // Replacing "first" makes "second" plan with unknown triggers again, hence a replacement too.
    await writeConfig(config('2'));
    const change = await tf(['plan', '-input=false', '-no-color']);
    expect(change.stdout).toMatch(/# null_resource\.second must be replaced/);
    expect(change.stdout).toMatch(new RegExp(`~ "first_id" = "${firstId}" -> \\(known after apply\\)`));
    expect(change.stdout).toMatch(/Plan: 2 to add, 0 to change, 2 to destroy\./);

    // The refined unknown ("gen-" prefix) reached the provider and came back untouched.
    const rpc = (await fsp.readFile(tfEnv.providerLogPath!, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    const planned = rpc.filter((e) => e.rpc === 'PlanResourceChange' && e.planned_state?.triggers?.fixed === 'x');
    expect(planned.some((e) => e.planned_state.triggers.prefixed?.$unknown === true && e.planned_state.triggers.prefixed?.refined === true)).toBe(true);
  });

  test('state written by an older provider (extra attributes, private data) upgrades without changes; import is refused', async () => {
    await writeConfig('resource "null_resource" "old" {}\nresource "null_resource" "imp" {}\n');
    const legacyState = {
      version: 4,
      terraform_version: '0.14.11',
      serial: 1,
      lineage: '8d8c5bdb-2f0c-4b41-9a9e-1f6f0b8c3a11',
      outputs: {},
      resources: [
        {
          mode: 'managed',
          type: 'null_resource',
          name: 'old',
          provider: 'provider["registry.terraform.io/hashicorp/null"]',
          instances: [
            {
              schema_version: 0,
              attributes: { id: '5577006791947779410', legacy_only: 'ignored' },
              private: Buffer.from('{"schema_version":"0"}').toString('base64'),
            },
          ],
        },
      ],
    };
    await fsp.writeFile(path.join(dir, 'terraform.tfstate'), JSON.stringify(legacyState));
    await tf(['init', '-input=false', '-no-color']);

    const plan = await tf(['plan', '-input=false', '-no-color', '-target=null_resource.old', '-detailed-exitcode']);
    expect(plan.stdout).toMatch(/No changes\./);
    const rpc = (await fsp.readFile(tfEnv.providerLogPath!, 'utf8'))
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(rpc.find((e) => e.rpc === 'PlanResourceChange')).toMatchObject({
      prior_state: { id: '5577006791947779410', triggers: null },
      prior_private: '{"schema_version":"0"}',
    });

    const imp = await tf(['import', '-input=false', '-no-color', 'null_resource.imp', 'whatever'], [1]);
    expect(imp.stderr).toMatch(/Resource Import Not Implemented/);
  });
});
