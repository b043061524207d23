import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import {
  HostSpec,
  SPEC_ENV_PREFIX,
  SpecError,
  gunzipBase64,
  specTextOfTrigger,
  literalOfTemplate,
  triggersFileOf,
  type TriggerFiles,
  StrictSpecSchemas,
  checkBackendHostSpec,
  checkBalancerSpec,
  checkSpec,
} from '../model';

/**
 * Specs reach the agent three ways: from Terraform's provisioner (gzipped, base64, split over numbered
 * environment variables), from a file, or from a synthesized stack folder (every host of the stack).
 */

export function readSpecFromEnv(env: NodeJS.ProcessEnv): string | null {
  const parts: string[] = [];
  for (let i = 0; env[`${SPEC_ENV_PREFIX}${i}`] !== undefined; i++) parts.push(env[`${SPEC_ENV_PREFIX}${i}`]!);
  if (parts.length) {
    // the provisioner compresses `spec` as Terraform stores it, which for a large host is compressed already
    const outer = gunzipBase64(parts.join(''));
    const unpacked = 'problem' in outer ? outer : specTextOfTrigger(outer.text);
    if ('problem' in unpacked) throw new SpecError([{ path: '(spec)', field: `${SPEC_ENV_PREFIX}*`, message: unpacked.problem }]);
    return unpacked.text;
  }
  return env.TULA_DSR_SPEC ?? null;
}

/**
 * Validates a host spec with the same schemas and cross-checks as synth, now with every Terraform token resolved.
 * Throws SpecError listing every problem.
 */
export function parseHostSpec(text: string): HostSpec {
  return validateHostSpec(parseSpecJson(text));
}

/** The first half of parseHostSpec: the JSON, not yet validated. */
export function parseSpecJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new SpecError([{ path: '(spec)', field: '(json)', message: `is not valid JSON: ${(error as Error).message}` }]);
  }
}

/** The second half of parseHostSpec. */
export function validateHostSpec(data: unknown): HostSpec {
  const result = checkSpec(StrictSpecSchemas.HostSpecSchema, data, '(spec)', (spec) =>
    spec.kind === 'balancer' ? checkBalancerSpec(spec) : checkBackendHostSpec(spec),
  );
  if (!result.ok) throw new SpecError(result.issues);
  return result.value;
}

export interface StackHost {
  readonly address: string;
  /** The host's name in the spec (the construct id). */
  readonly name: string;
  readonly specText: string;
  readonly kind: 'balancer' | 'backend';
}

/** A host resource's triggers from the files beside cdk.tf.json that its attribute names, the spec as JSON (see triggersFileExpression). */
function readTriggerFiles(stackDir: string, files: TriggerFiles, address: string): Record<string, string> {
  const read = (relative: string) => {
    const file = join(stackDir, relative);
    try {
      return { file, text: readFileSync(file, 'utf8') };
    } catch (error) {
      throw new SpecError([
        { path: address, field: 'triggers', value: file, message: `cannot be read: ${(error as Error).message}; run \`cdktf synth\` again` },
      ]);
    }
  };
  const map = read(files.triggers);
  const spec = read(files.spec);
  try {
    const triggers = JSON.parse(map.text) as unknown;
    if (triggers !== null && typeof triggers === 'object' && !Array.isArray(triggers)) return { ...(triggers as Record<string, string>), spec: spec.text };
  } catch (error) {
    throw new SpecError([
      { path: address, field: 'triggers', value: map.file, message: `is not JSON: ${(error as Error).message}; run \`cdktf synth\` again` },
    ]);
  }
  throw new SpecError([{ path: address, field: 'triggers', value: map.file, message: 'is not a map of triggers; run `cdktf synth` again' }]);
}

/**
 * A host resource's triggers as Terraform reads them, from its attribute in cdk.tf.json: a map of templates (each
 * value's literal text, or null for one that holds a reference only Terraform resolves) or the file it names.
 */
export function synthesizedTriggers(stackDir: string, attribute: unknown, address: string): Record<string, string | null> | undefined {
  const fromFile = triggersFileOf(attribute);
  if (fromFile !== null) return readTriggerFiles(stackDir, fromFile, address);
  if (attribute === null || typeof attribute !== 'object') return undefined;
  return Object.fromEntries(Object.entries(attribute as Record<string, string>).map(([key, template]) => [key, literalOfTemplate(template)]));
}

/** Reads every tula-dsr host of a synthesized stack (cdktf.out/stacks/NAME or its cdk.tf.json). */
export function readStackHosts(path: string): StackHost[] {
  const file = path.endsWith('.json') ? path : join(path, 'cdk.tf.json');
  let json: {
    resource?: Record<
      string,
      Record<string, { triggers?: Record<string, string> | string; triggers_replace?: Record<string, string> | string; provisioner?: unknown }>
    >;
  };
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    const hint = (() => {
      try {
        return readdirSync(path).length ? '' : ' (empty folder)';
      } catch {
        return '';
      }
    })();
    throw new SpecError([
      { path: file, field: '(file)', message: `cannot be read as a synthesized stack${hint}: ${(error as Error).message}; run \`cdktf synth\` first` },
    ]);
  }
  const hosts: StackHost[] = [];
  for (const [type, resources] of Object.entries(json.resource ?? {})) {
    for (const [name, resource] of Object.entries(resources)) {
      if (!JSON.stringify(resource.provisioner ?? '').includes('tula-dsr/agent')) continue;
      const specText = synthesizedTriggers(dirname(file), resource.triggers ?? resource.triggers_replace, `${type}.${name}`)?.spec;
      if (specText === undefined) {
        // a host resource whose triggers this version cannot read (synthesized by another one): never skipped silently
        throw new SpecError([
          { path: `${type}.${name}`, field: 'triggers', message: 'are in a form this version of tula-dsr does not read; run `cdktf synth` again' },
        ]);
      }
      if (specText === null) {
        throw new SpecError([
          {
            path: `${type}.${name}`,
            field: 'spec',
            message: 'holds Terraform references that only `terraform apply` can resolve; deploy this stack with Terraform',
          },
        ]);
      }
      const { kind, name: hostName } = JSON.parse(specText) as { kind: 'balancer' | 'backend'; name: string };
      hosts.push({ address: `${type}.${name}`, name: hostName, specText, kind });
    }
  }
  return hosts;
}
