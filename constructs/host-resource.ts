import {
  dependable,
  Fn,
  IResolvable,
  IResolveContext,
  Lazy,
  TerraformElement,
  TerraformResource,
  TerraformStack,
  hashMapper,
  hashMapperHcl,
  stringToTerraform,
  stringToHclTerraform,
  Token,
} from 'cdktf';
import { NullProvider } from '@cdktf/provider-null/lib/provider';
import { Resource as NullResource } from '@cdktf/provider-null/lib/resource';
import { Construct } from 'constructs';
import { SPEC_ENV_CHUNK, SPEC_ENV_PREFIX } from '../model/agent-contract';
import { SpecIssue } from '../model/issues';
import { reportIssues } from './issues';

/** Stack-wide construct context key that selects how host resources are emitted. */
export const ENGINE_CONTEXT_KEY = 'tula-dsr:engine';
export const ENGINES = ['null_resource', 'terraform_data'] as const;
export type Engine = (typeof ENGINES)[number];

/**
 * The engine the context selects. An unknown value is a user mistake (often a typo in cdktf.json), reported through
 * the construct's validation with every other problem; synth goes on with the default engine until then.
 */
export function engineOf(scope: Construct): { engine: Engine; issue?: SpecIssue } {
  const value = scope.node.tryGetContext(ENGINE_CONTEXT_KEY) ?? 'null_resource';
  if ((ENGINES as readonly string[]).includes(value)) return { engine: value as Engine };
  return {
    engine: 'null_resource',
    issue: {
      path: scope.node.path,
      field: `context ${ENGINE_CONTEXT_KEY}`,
      value,
      message: `${JSON.stringify(value)} is not supported; use 'null_resource' (default) or 'terraform_data'`,
    },
  };
}

const stacksWithEngineIssue = new WeakSet<TerraformStack>();

/** The engine for a host construct's resources; an unknown engine becomes one problem of its stack. */
function checkedEngine(scope: Construct): Engine {
  const { engine, issue } = engineOf(scope);
  const stack = TerraformStack.of(scope);
  if (issue && !stacksWithEngineIssue.has(stack)) {
    stacksWithEngineIssue.add(stack);
    reportIssues(stack, () => [{ ...issue, path: stack.node.path }]);
  }
  return engine;
}

/**
 * Terraform's built-in `terraform_data`, emitted as a plain resource: cdktf's DataResource would add a
 * `terraform version` validation per instance (about 45 ms each), which dominates synth at 1,000 resources.
 */
class TerraformDataResource extends TerraformResource {
  constructor(
    scope: Construct,
    id: string,
    private readonly triggersReplace: Record<string, string>,
  ) {
    super(scope, id, { terraformResourceType: 'terraform_data' });
  }
  protected override synthesizeAttributes(): Record<string, unknown> {
    return { triggers_replace: hashMapper(stringToTerraform)(this.triggersReplace) };
  }
  protected override synthesizeHclAttributes(): Record<string, unknown> {
    return {
      triggers_replace: { value: hashMapperHcl(stringToHclTerraform)(this.triggersReplace), isBlock: false, type: 'map', storageClassType: 'stringMap' },
    };
  }
}

/**
 * The provisioner command. It resolves the agent from the directory Terraform runs in (the stack folder under
 * the cdktf outdir), through the project's own node_modules, so the synthesized JSON holds no absolute path.
 */
export function agentCommand(verb: 'apply' | 'remove'): string {
  return `node -e 'require("tula-dsr/agent").main(["${verb}"])'`;
}

/**
 * The spec reaches the agent from `self` only (destroy-time provisioners may not reference anything else):
 * gzipped, base64-encoded and split into numbered variables, so that a large balancer fits the kernel's limits.
 */
export function agentEnvironment(selfSpec: string): string {
  const packed = `base64gzip(${selfSpec})`;
  return `\${{ for i in range(ceil(length(${packed}) / ${SPEC_ENV_CHUNK})) : "${SPEC_ENV_PREFIX}\${i}" => substr(${packed}, i * ${SPEC_ENV_CHUNK}, ${SPEC_ENV_CHUNK}) }}`;
}

/**
 * Terraform's `sha256()` of a text that holds token references, e.g. the spec JSON with an IP known only after
 * apply. cdktf inserts a function's string argument between double quotes without escaping them (and refuses
 * quotes for that reason), so backslashes and quotes are escaped here; the `${…}` token markers contain neither,
 * and cdktf escapes the newlines. Terraform then hashes exactly the text it puts in the trigger.
 */
export function terraformSha256(text: string): string {
  return Fn.sha256(text.replace(/\\/g, '\\\\').replace(/"/g, '\\"'));
}

export interface HostResourceOptions {
  /** All trigger values, produced at synth once every VIP and backend exists; throws SpecError on a problem. */
  readonly triggers: () => Record<string, string>;
  /** Whether the host has problems (its validation reports them). */
  readonly hasProblems: () => boolean;
  /** Resources that must be applied first (backend hosts before the balancer that sends them traffic). */
  readonly dependsOn: () => TerraformResource[];
}

function ensureNullProvider(scope: Construct): void {
  const stack = TerraformStack.of(scope);
  if (!stack.node.findAll().some((c) => c instanceof NullProvider)) new NullProvider(stack, 'tula-dsr-null');
}

const RESOURCE_TYPE: Record<Engine, string> = { null_resource: 'null_resource', terraform_data: 'terraform_data' };
const SELF_SPEC: Record<Engine, string> = { null_resource: 'self.triggers.spec', terraform_data: 'self.triggers_replace.spec' };

/**
 * Terraform drops a resource's destroy-time provisioner together with its block, so deleting a host construct
 * would leave the host configured. A `removed` block (Terraform ≥ 1.7) for the same address keeps the provisioner:
 * the element takes the deleted resource's construct path, hence its logical id, and emits only that block.
 */
class RemovedHostResource extends TerraformElement {
  constructor(
    scope: Construct,
    id: string,
    private readonly engine: Engine,
  ) {
    super(scope, id);
  }
  override toTerraform(): Record<string, unknown> {
    const environment = agentEnvironment(SELF_SPEC[this.engine]);
    return {
      removed: [
        {
          from: `${RESOURCE_TYPE[this.engine]}.${this.friendlyUniqueId}`,
          lifecycle: { destroy: true },
          provisioner: [{ 'local-exec': { when: 'destroy', command: agentCommand('remove'), environment } }],
        },
      ],
    };
  }
}

/** The `removed` block for a deleted host construct at `scope/id` (see Balancer.retire and BackendHost.retire). */
export function emitRemovedHost(scope: Construct, id: string): void {
  const holder = new Construct(scope, id);
  new RemovedHostResource(holder, 'host', checkedEngine(holder));
}

/**
 * The triggers as a token resolved at synth. cdktf resolves every value once before it runs the validations (the
 * "preparing" pass, which looks for cross-stack references): a problem thrown there would reach the user wrapped in
 * "Resolution error: …" with the token's creation stack, ahead of the validation that lists every problem at its
 * construct path. So that pass gets a placeholder, and the problems reach the user through validation only. The
 * final pass still refuses a host with problems (reachable only when validations are skipped): a SpecError, with no
 * creation stack to append.
 */
function triggersToken(options: HostResourceOptions): Record<string, string> {
  const token: IResolvable = {
    creationStack: [],
    resolve: (context: IResolveContext) => (context.preparing && options.hasProblems() ? {} : options.triggers()),
    toString: () => Token.asString(token),
  };
  return Token.asAny(token) as unknown as Record<string, string>;
}

/** One Terraform resource per host, replaced whenever its rendered configuration changes. */
export function emitHostResource(scope: Construct, id: string, options: HostResourceOptions): TerraformResource {
  const engine = checkedEngine(scope);
  const triggers = triggersToken(options);
  let resource: TerraformResource;
  if (engine === 'null_resource') {
    ensureNullProvider(scope);
    resource = new NullResource(scope, id, { triggers });
  } else {
    resource = new TerraformDataResource(scope, id, triggers);
  }
  const selfSpec = SELF_SPEC[engine];
  resource.lifecycle = { createBeforeDestroy: true };
  resource.dependsOn = Lazy.listValue({ produce: () => options.dependsOn().map((r) => dependable(r)) }) as unknown as string[];
  const environment = agentEnvironment(selfSpec);
  resource.addOverride('provisioner', [
    { 'local-exec': { command: agentCommand('apply'), environment } },
    { 'local-exec': { when: 'destroy', command: agentCommand('remove'), environment } },
  ]);
  return resource;
}
