import { z } from 'zod';

/**
 * The part of `terraform show -json PLAN` (format 1.x) that the review reads. Terraform adds keys within a major
 * version, so every object is loose: unknown keys pass, the ones read here are checked.
 */
const ChangeSchema = z.looseObject({
  actions: z.array(z.string()),
  before: z.unknown().optional(),
  after: z.unknown().optional(),
  after_unknown: z.unknown().optional(),
  before_sensitive: z.unknown().optional(),
  after_sensitive: z.unknown().optional(),
});

const ResourceChangeSchema = z.looseObject({
  address: z.string(),
  previous_address: z.string().optional(),
  type: z.string(),
  name: z.string().optional(),
  action_reason: z.string().optional(),
  change: ChangeSchema,
});

const ConfigResourceSchema = z.looseObject({
  address: z.string(),
  expressions: z.record(z.string(), z.unknown()).optional(),
  provisioners: z.array(z.looseObject({ type: z.string(), expressions: z.record(z.string(), z.unknown()).optional() })).optional(),
});

interface ConfigModule {
  readonly resources?: z.infer<typeof ConfigResourceSchema>[];
  readonly module_calls?: Record<string, { readonly module?: ConfigModule }>;
}
const ConfigModuleSchema: z.ZodType<ConfigModule> = z.lazy(() =>
  z.looseObject({
    resources: z.array(ConfigResourceSchema).optional(),
    module_calls: z.record(z.string(), z.looseObject({ module: ConfigModuleSchema.optional() })).optional(),
  }),
);

const PlanSchema = z.looseObject({
  format_version: z.string(),
  terraform_version: z.string().optional(),
  resource_changes: z.array(ResourceChangeSchema).optional(),
  configuration: z.looseObject({ root_module: ConfigModuleSchema.optional() }).optional(),
  errored: z.boolean().optional(),
  complete: z.boolean().optional(),
});

export type TerraformPlan = z.infer<typeof PlanSchema>;
export type ResourceChange = z.infer<typeof ResourceChangeSchema>;
export type ConfigResource = z.infer<typeof ConfigResourceSchema>;

/** The plan format major version this review reads (`terraform show -json` of Terraform 1.x writes 1.x). */
export const PLAN_FORMAT_MAJOR = 1;

/** A plan the review cannot read; `source` names the file (or stdin), `message` what is wrong and what to do. */
export class PlanReadError extends Error {
  constructor(
    readonly source: string,
    readonly problem: string,
  ) {
    super(`${source}: ${problem}`);
    this.name = 'PlanReadError';
  }
}

const SHOW_JSON = 'terraform show -json PLAN > plan.json';

/** Parses the text `terraform show -json PLAN` printed; throws PlanReadError with what to do instead. */
export function parsePlanJson(text: string, source: string): TerraformPlan {
  if (text.startsWith('PK\u0003\u0004')) {
    throw new PlanReadError(
      source,
      `this is a binary plan file (terraform plan -out); give the JSON Terraform prints for it: terraform show -json ${source} > plan.json`,
    );
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new PlanReadError(source, `not JSON (${(error as Error).message}); give the output of ${SHOW_JSON}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || typeof (value as Record<string, unknown>).format_version !== 'string') {
    throw new PlanReadError(source, `no format_version: this is not the output of ${SHOW_JSON}`);
  }
  const record = value as Record<string, unknown>;
  const version = record.format_version as string;
  const major = Number(version.split('.')[0]);
  if (major !== PLAN_FORMAT_MAJOR) {
    throw new PlanReadError(
      source,
      `format_version ${JSON.stringify(version)} is not supported; tula-dsr review reads format ${PLAN_FORMAT_MAJOR}.x (terraform show -json of Terraform 1.x)`,
    );
  }
  if (!('resource_changes' in record) && !('planned_values' in record)) {
    throw new PlanReadError(
      source,
      `this is Terraform state (terraform show -json without a plan), not a plan: run terraform plan -out=PLAN, then ${SHOW_JSON}`,
    );
  }
  const parsed = PlanSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${String(p)}`)).join('');
    throw new PlanReadError(source, `unexpected plan structure at ${at.replace(/^\./, '') || '(root)'}: ${issue.message}`);
  }
  return parsed.data;
}

/** Every configured resource by its full address, modules included. */
export function configResources(plan: TerraformPlan): Map<string, ConfigResource> {
  const byAddress = new Map<string, ConfigResource>();
  const walk = (module: ConfigModule | undefined, prefix: string) => {
    for (const r of module?.resources ?? []) byAddress.set(`${prefix}${r.address}`, r);
    for (const [name, call] of Object.entries(module?.module_calls ?? {})) walk(call.module, `${prefix}module.${name}.`);
  };
  walk(plan.configuration?.root_module, '');
  return byAddress;
}
