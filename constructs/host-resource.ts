import {
  dependable,
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
import * as path from 'node:path';
import { SPEC_ENV_CHUNK, SPEC_ENV_PREFIX, SPEC_REVIEW_KEY } from '../model/agent-contract';
import { renderCommand } from '../model/shell';
import { escapeTemplates } from '../model/terraform-template';
import { SpecIssue } from '../model/issues';
import { reportIssues } from './issues';
import { SpecTrigger, specTemplate, specTrigger, templateOf } from './spec-trigger';
import { stackDirOf, triggersAttribute, triggersInlineMaxBytes } from './trigger-file';

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

const stacksWithIssue = new Map<string, WeakSet<TerraformStack>>();

/** A problem of the stack's context, reported once per stack and context key whatever the number of hosts. */
function reportOncePerStack(scope: Construct, issue: SpecIssue | undefined): void {
  if (!issue) return;
  const stack = TerraformStack.of(scope);
  const reported = stacksWithIssue.get(issue.field) ?? stacksWithIssue.set(issue.field, new WeakSet()).get(issue.field)!;
  if (reported.has(stack)) return;
  reported.add(stack);
  reportIssues(stack, () => [{ ...issue, path: stack.node.path }]);
}

/** The engine for a host construct's resources; an unknown engine becomes one problem of its stack. */
function checkedEngine(scope: Construct): Engine {
  const { engine, issue } = engineOf(scope);
  reportOncePerStack(scope, issue);
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
    private readonly triggersReplace: Record<string, string> | string,
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
 * Context key: the folder of the project that synthesizes the stack, whose tula-dsr the provisioners run.
 * @default - the folder the app runs in (cdktf runs it in the project folder, where cdktf.json is)
 */
export const PROJECT_ROOT_CONTEXT_KEY = 'tula-dsr:project-root';

/**
 * The provisioner's loader, run by `node -e` with two arguments: the project folder relative to the stack folder
 * (Terraform runs provisioners there), and the verb. It resolves `tula-dsr/agent` from that project only, and runs
 * it only if it lies inside the project or inside the project's own node_modules/tula-dsr (which may be a link, as
 * with `npm link`): a `node_modules/tula-dsr` planted between the stack folder and the project, or above the
 * project, is never loaded. Plain JavaScript without a single quote (it sits inside one) and without `${` or `%{`
 * (Terraform reads the command as a template).
 */
const AGENT_LOADER = [
  'const p=require("path"),f=require("fs"),root=p.resolve(process.argv[1]);',
  'let agent;try{agent=f.realpathSync(require("module").createRequire(p.join(root,"package.json")).resolve("tula-dsr/agent"))}catch{}',
  'const within=(d)=>{try{return agent.startsWith(f.realpathSync(d)+p.sep)}catch{return false}};',
  'if(!agent||!(within(root)||within(p.join(root,"node_modules","tula-dsr")))){',
  'console.error("tula-dsr: refusing to run "+(agent||"an agent that is not installed")+": provisioners run only the tula-dsr installed in "+root+", the project that synthesized this stack (cdktf context tula-dsr:project-root)");',
  'process.exit(1)}',
  'require(agent).main([process.argv[2]])',
].join('');

/**
 * The exit status by which the perl client (agent/daemon/client.pl) leaves a run to the node loader, before it has
 * sent anything; 126 and 127 are the shell's own for a perl that cannot run or is not there.
 */
export const PROVISIONER_HANDOVER_EXIT = 86;

/**
 * The perl loader, run by `perl -e` with the same arguments (the verb may have options after it): it finds the same two places the node loader
 * accepts (the project itself when it is tula-dsr, else the project's own node_modules/tula-dsr), never anything
 * above them, and runs that package's perl client. A node process costs each provisioner about 100 ms of CPU before
 * it does any work, perl about 20 ms; with a hundred hosts on two cores that is seconds (docs/decisions.md). Perl
 * without a single quote, `${` or `%{`, as above.
 */
export const PERL_LOADER = [
  `use Cwd "abs_path";my$d=shift;my$r=-d$d&&abs_path($d);exit ${PROVISIONER_HANDOVER_EXIT} unless$r;my$p;`,
  'if(open my$f,"<","$r/package.json"){local$/;$p=$r if<$f>=~/"name"\\s*:\\s*"tula-dsr"/}',
  `$p||=-d"$r/node_modules/tula-dsr"&&abs_path("$r/node_modules/tula-dsr");exit ${PROVISIONER_HANDOVER_EXIT} unless$p;`,
  `my$c="$p/dist/agent/daemon/client.pl";exit ${PROVISIONER_HANDOVER_EXIT} unless-f$c;@ARGV=($p,@ARGV);do$c;exit ${PROVISIONER_HANDOVER_EXIT}`,
].join('');

/**
 * The provisioner command: the perl client where perl is at hand, the node loader where it is not or where the perl
 * client hands the run over; given where the project is relative to the stack folder, so the synthesized JSON holds
 * no absolute path for a project that keeps its cdktf.out inside it.
 */
export function agentCommand(verb: 'apply' | 'remove', projectFromStack: string): string {
  const perl = renderCommand(['perl', '-e', PERL_LOADER, projectFromStack, verb]);
  const node = renderCommand(['node', '-e', AGENT_LOADER, projectFromStack, verb]);
  return `${perl}; s=$?; case $s in ${PROVISIONER_HANDOVER_EXIT}|126|127) exec ${node};; esac; exit $s`;
}

/** Where the project folder is, seen from the folder cdktf writes this stack to (`<outdir>/stacks/<stack id>`). */
export function projectFromStack(scope: Construct): string {
  const stackDir = stackDirOf(scope);
  const root = path.resolve(scope.node.tryGetContext(PROJECT_ROOT_CONTEXT_KEY) ?? process.cwd());
  return path.relative(stackDir, root) || '.';
}

/**
 * The spec reaches the agent from `self` only (destroy-time provisioners may not reference anything else):
 * gzipped, base64-encoded and split into numbered variables, so that a large balancer fits the kernel's limits.
 */
export function agentEnvironment(selfSpec: string): string {
  const packed = `base64gzip(${selfSpec})`;
  return `\${{ for i in range(ceil(length(${packed}) / ${SPEC_ENV_CHUNK})) : "${SPEC_ENV_PREFIX}\${i}" => substr(${packed}, i * ${SPEC_ENV_CHUNK}, ${SPEC_ENV_CHUNK}) }}`;
}

export interface HostResourceOptions<S extends object> {
  /** The host's validated spec, produced at synth once every VIP and backend exists. */
  readonly spec: () => S;
  /** The configuration as the plan shows it (trigger key → text), rendered from a spec that holds no token. */
  readonly review: (spec: S) => Record<string, string>;
  /** The review keys a spec with tokens still shows, saying that the agent renders them at apply time. */
  readonly pendingKeys: readonly string[];
  /** Whether the host has problems (its validation reports them; the spec cannot be built). */
  readonly hasProblems: () => boolean;
  /** Resources that must be applied first (backend hosts before the balancer that sends them traffic). */
  readonly dependsOn: () => TerraformResource[];
}

const PENDING = '(rendered by the agent at apply time: the spec holds values Terraform knows only after apply)\n';

/** The local that holds the template of a spec with tokens (see specTrigger); nothing for a spec without. */
class SpecLocal extends TerraformElement {
  constructor(
    scope: Construct,
    id: string,
    private readonly localName: string,
    private readonly template: () => string | undefined,
  ) {
    super(scope, id);
  }
  override toTerraform(): Record<string, unknown> {
    const template = this.template();
    return template === undefined ? {} : { locals: { [this.localName]: template } };
  }
}

/**
 * All triggers of a host resource: `spec` and `hash`, and the review text, each read literally by Terraform. A spec
 * without tokens may go to a file (triggersAttribute); one with tokens stays inline, as templates of the local.
 */
function hostTriggers<S extends object>(
  options: HostResourceOptions<S>,
  spec: S,
  trigger: SpecTrigger,
  file: { readonly scope: Construct; readonly resourceId: string; readonly maxBytes: number },
): Record<string, string> | string {
  if ('text' in trigger) return triggersAttribute(file.scope, file.resourceId, { ...options.review(spec), spec: trigger.text, hash: trigger.hash }, file);
  const review = { ...Object.fromEntries(options.pendingKeys.map((key) => [key, PENDING])), [SPEC_REVIEW_KEY]: trigger.review };
  return { ...escapeTemplates(review), spec: trigger.spec, hash: trigger.hash };
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
          provisioner: [{ 'local-exec': { when: 'destroy', command: agentCommand('remove', projectFromStack(this)), environment } }],
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
 * A value produced at synth only in cdktf's final pass. cdktf resolves every value once before ("preparing"), to find
 * references across stacks, and throws that output away. The triggers never hold such a reference (a spec's tokens
 * live in its local), so the preparing pass gets a placeholder: building a large balancer's triggers twice was half of
 * its synth. It also keeps a host's problems out of that pass, where a throw would reach the user wrapped in
 * "Resolution error: …" with the token's creation stack, ahead of the validation that lists every problem at its
 * construct path. The final pass still refuses a host with problems (reachable only when validations are skipped): a
 * SpecError, with no creation stack to append. `onPass` learns which pass resolved it.
 */
function finalPassOnly<T>(placeholder: T, produce: () => T, onPass: (preparing: boolean) => void): T {
  const token: IResolvable = {
    creationStack: [],
    resolve: (context: IResolveContext) => {
      onPass(context.preparing);
      return context.preparing ? placeholder : produce();
    },
    toString: () => Token.asString(token),
  };
  return Token.asAny(token) as unknown as T;
}

/** One Terraform resource per host, replaced whenever its rendered configuration changes. */
export function emitHostResource<S extends object>(scope: Construct, id: string, options: HostResourceOptions<S>): TerraformResource {
  const engine = checkedEngine(scope);
  const inline = triggersInlineMaxBytes(scope);
  reportOncePerStack(scope, inline.issue);
  let localName = '';
  // The resource resolves before the local that follows it (tree order), in each pass: the local learns the pass, and
  // in the final one reuses what the resource's resolution computed instead of building the spec again.
  let computed: SpecTrigger | undefined;
  let preparing = false;
  const triggers = finalPassOnly<Record<string, string> | string>(
    {},
    () => {
      const spec = options.spec();
      computed = specTrigger(scope, spec, localName);
      return hostTriggers(options, spec, computed, { scope, resourceId: resource.friendlyUniqueId, maxBytes: inline.bytes });
    },
    (pass) => (preparing = pass),
  );
  let resource: TerraformResource;
  if (engine === 'null_resource') {
    ensureNullProvider(scope);
    resource = new NullResource(scope, id, { triggers: triggers as Record<string, string> });
  } else {
    resource = new TerraformDataResource(scope, id, triggers);
  }
  localName = `${resource.friendlyUniqueId}_spec`;
  new SpecLocal(scope, `${id}-spec`, localName, () => {
    if (options.hasProblems()) return undefined;
    // preparing: only a spec with tokens has a local, whose tokens that pass is for
    if (preparing) return specTemplate(scope, options.spec(), localName);
    const trigger = computed ?? specTrigger(scope, options.spec(), localName);
    computed = undefined;
    return templateOf(trigger);
  });
  const selfSpec = SELF_SPEC[engine];
  resource.lifecycle = { createBeforeDestroy: true };
  resource.dependsOn = Lazy.listValue({ produce: () => options.dependsOn().map((r) => dependable(r)) }) as unknown as string[];
  const environment = agentEnvironment(selfSpec);
  const project = projectFromStack(scope);
  resource.addOverride('provisioner', [
    { 'local-exec': { command: agentCommand('apply', project), environment } },
    { 'local-exec': { when: 'destroy', command: agentCommand('remove', project), environment } },
  ]);
  return resource;
}
