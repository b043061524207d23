// @ts-check
'use strict';
/**
 * The behaviour of hashicorp/null 3.2.4 (built on terraform-plugin-framework), re-implemented
 * for the offline labs and tests: the `null_resource` managed resource and the deprecated `null_data_source`.
 *
 * Each handler takes a decoded protobuf request (tfplugin5) and returns a plain response object.
 * Faithful points that Terraform (and so cdktf tests) can observe:
 *   - schema: id (string, computed), triggers (map of string, optional), schema version 0;
 *   - create plans id as unknown ("(known after apply)"); apply sets it to a random decimal
 *     integer string, like Go's rand.Int();
 *   - triggers use the provider's RequiresReplaceIfValuesNotNull plan modifier: a change forces
 *     replacement, requires_replace = [["triggers"]];
 *   - id uses UseStateForUnknown: an in-place update keeps the prior id;
 *   - unknown values (including refined unknowns) in config pass through the plan untouched;
 *   - destroy: planned state null (plan_destroy capability) and apply returns null;
 *   - private data passes through plan, apply and read unchanged;
 *   - import is not supported (same error text as the framework).
 *
 * LAB AND TEST SUPPORT ONLY: never shipped, and not the provider.
 */
const { randomBytes } = require('node:crypto');
const V = require('./values');

const SEVERITY_ERROR = 1;
const SEVERITY_WARNING = 2;
const STRING_KIND_PLAIN = 0;

/** @typedef {import('./values').Value} Value */
/** @typedef {{ severity: number, summary: string, detail: string }} Diagnostic */

/** @param {string} summary @param {string} detail @returns {Diagnostic} */
function errorDiag(summary, detail) {
  return { severity: SEVERITY_ERROR, summary, detail };
}

/**
 * A random decimal string in [0, 2^63), like fmt.Sprintf("%d", rand.Int()) in Go.
 * @returns {string}
 */
function randomId() {
  return (randomBytes(8).readBigUInt64BE() & 0x7fffffffffffffffn).toString(10);
}

/**
 * @typedef {{ name: string, type: import('./values').CtyType, description: string,
 *              optional?: boolean, computed?: boolean, deprecated?: boolean }} AttrDef
 * @typedef {{ description: string, deprecated?: boolean, deprecationMessage?: string, attributes: AttrDef[] }} BlockDef
 */

/** @type {BlockDef} */
const NULL_RESOURCE = {
  description:
    'The `null_resource` resource implements the standard resource lifecycle but takes no further action. ' +
    'On Terraform 1.4 and later, use the [terraform_data resource type](https://developer.hashicorp.com/terraform/language/resources/terraform-data) instead.\n\n' +
    'The `triggers` argument allows specifying an arbitrary set of values that, when changed, will cause the resource to be replaced.',
  attributes: [
    { name: 'id', type: 'string', computed: true, description: 'This is set to a random value at create time.' },
    {
      name: 'triggers',
      type: ['map', 'string'],
      optional: true,
      description: 'A map of arbitrary strings that, when changed, will force the null resource to be replaced, re-running any associated provisioners.',
    },
  ],
};

/** @type {BlockDef} */
const NULL_DATA_SOURCE = {
  description:
    'The `null_data_source` data source implements the standard data source lifecycle but does not\ninteract with any external APIs.\n\n' +
    'Historically, the `null_data_source` was typically used to construct intermediate values to re-use elsewhere in configuration. ' +
    'The\nsame can now be achieved using [locals](https://developer.hashicorp.com/terraform/language/values/locals) or the ' +
    '[terraform_data resource type](https://developer.hashicorp.com/terraform/language/resources/terraform-data) in Terraform 1.4 and later.',
  deprecated: true,
  deprecationMessage:
    'The null_data_source was historically used to construct intermediate values to re-use elsewhere ' +
    'in configuration, the same can now be achieved using locals or the terraform_data resource type in Terraform 1.4 and later.',
  attributes: [
    {
      name: 'has_computed_default',
      type: 'string',
      optional: true,
      computed: true,
      description:
        'If set, its literal value will be stored and returned. If not, its value defaults to `"default"`. This argument exists primarily for testing and has little practical use.',
    },
    {
      name: 'id',
      type: 'string',
      computed: true,
      deprecated: true,
      description: 'This attribute is only present for some legacy compatibility issues and should not be used. It will be removed in a future version.',
    },
    {
      name: 'inputs',
      type: ['map', 'string'],
      optional: true,
      description: 'A map of arbitrary strings that is copied into the `outputs` attribute, and accessible directly for interpolation.',
    },
    { name: 'outputs', type: ['map', 'string'], computed: true, description: 'After the data source is "read", a copy of the `inputs` map.' },
    {
      name: 'random',
      type: 'string',
      computed: true,
      description:
        'A random value. This is primarily for testing and has little practical use; prefer the [hashicorp/random provider](https://registry.terraform.io/providers/hashicorp/random) for more practical random number use-cases.',
    },
  ],
};

/** @param {BlockDef} block @returns {import('./values').CtyType} */
function impliedType(block) {
  return ['object', Object.fromEntries(block.attributes.map((a) => [a.name, a.type]))];
}

/** @param {BlockDef} block */
function toProtoSchema(block) {
  return {
    version: 0,
    block: {
      version: 0,
      attributes: block.attributes.map((a) => ({
        name: a.name,
        type: Buffer.from(JSON.stringify(a.type)),
        description: a.description,
        description_kind: STRING_KIND_PLAIN,
        optional: !!a.optional,
        computed: !!a.computed,
        required: false,
        sensitive: false,
        deprecated: !!a.deprecated,
      })),
      block_types: [],
      description: block.description,
      description_kind: STRING_KIND_PLAIN,
      deprecated: !!block.deprecated,
    },
  };
}

const RESOURCE_TYPE = impliedType(NULL_RESOURCE);
const DATA_SOURCE_TYPE = impliedType(NULL_DATA_SOURCE);
/** @type {import('./values').CtyType} */
const PROVIDER_CONFIG_TYPE = ['object', {}];

const SERVER_CAPABILITIES = { plan_destroy: true, get_provider_schema_optional: true, move_resource_state: false };

/** @param {string} typeName */
function resourceNotFound(typeName) {
  return errorDiag(
    'Resource Type Not Found',
    `The resource type "${typeName}" was not found. This is always an issue with the provider and should be reported to the provider developers.`,
  );
}

/** @param {string} typeName */
function dataSourceNotFound(typeName) {
  return errorDiag(
    'Data Source Type Not Found',
    `The data source type "${typeName}" was not found. This is always an issue with the provider and should be reported to the provider developers.`,
  );
}

/**
 * hashicorp/null's RequiresReplaceIfValuesNotNull plan modifier on `triggers`, transcribed
 * with the same edge cases (maps stored by the old SDK may have dropped null elements).
 * @param {Value} stateTriggers prior state value (prior state object is not null)
 * @param {Value} configTriggers configuration value
 * @returns {boolean}
 */
function triggersRequireReplace(stateTriggers, configTriggers) {
  if (V.equal(configTriggers, stateTriggers)) return false;
  /** @param {Value} m @returns {Record<string, Value>} */
  const elements = (m) => (m !== null && !V.isUnknown(m) && typeof m === 'object' ? /** @type {Record<string, Value>} */ (m) : {});
  const config = elements(configTriggers);
  if (stateTriggers === null) {
    // Replace only if some configured element is not null (unknown counts as not null).
    return Object.values(config).some((v) => v !== null);
  }
  const state = elements(stateTriggers);
  for (const [k, cv] of Object.entries(config)) {
    const present = Object.prototype.hasOwnProperty.call(state, k);
    if (!present && cv === null) continue;
    if (present && V.equal(cv, state[k])) continue;
    return true;
  }
  for (const k of Object.keys(state)) {
    if (!Object.prototype.hasOwnProperty.call(config, k)) return true;
  }
  return false;
}

/**
 * @param {(entry: Record<string, unknown>) => void} log called once per RPC with a summary
 */
function createProvider(log) {
  /** @param {string} rpc @param {Record<string, unknown>} [fields] */
  const note = (rpc, fields = {}) => log({ rpc, ...fields });

  return {
    /** @param {any} _req */
    GetMetadata(_req) {
      note('GetMetadata');
      return {
        server_capabilities: SERVER_CAPABILITIES,
        diagnostics: [],
        data_sources: [{ type_name: 'null_data_source' }],
        resources: [{ type_name: 'null_resource' }],
      };
    },

    /** @param {any} _req */
    GetSchema(_req) {
      note('GetSchema');
      return {
        provider: {
          version: 0,
          block: { version: 0, attributes: [], block_types: [], description: '', description_kind: STRING_KIND_PLAIN, deprecated: false },
        },
        resource_schemas: { null_resource: toProtoSchema(NULL_RESOURCE) },
        data_source_schemas: { null_data_source: toProtoSchema(NULL_DATA_SOURCE) },
        diagnostics: [],
        server_capabilities: SERVER_CAPABILITIES,
      };
    },

    /** @param {any} req */
    PrepareProviderConfig(req) {
      note('PrepareProviderConfig');
      const config = V.decodeDynamic(PROVIDER_CONFIG_TYPE, req.config);
      return { prepared_config: V.encodeDynamic(config), diagnostics: [] };
    },

    /** @param {any} req */
    Configure(req) {
      note('Configure', { terraform_version: req.terraform_version });
      V.decodeDynamic(PROVIDER_CONFIG_TYPE, req.config);
      return { diagnostics: [] };
    },

    /** @param {any} req */
    ValidateResourceTypeConfig(req) {
      note('ValidateResourceTypeConfig', { type_name: req.type_name });
      if (req.type_name !== 'null_resource') return { diagnostics: [resourceNotFound(req.type_name)] };
      V.decodeDynamic(RESOURCE_TYPE, req.config);
      return { diagnostics: [] };
    },

    /** @param {any} req */
    ValidateDataSourceConfig(req) {
      note('ValidateDataSourceConfig', { type_name: req.type_name });
      if (req.type_name !== 'null_data_source') return { diagnostics: [dataSourceNotFound(req.type_name)] };
      V.decodeDynamic(DATA_SOURCE_TYPE, req.config);
      // The framework warns on every use of a schema that carries a deprecation message.
      return { diagnostics: [{ severity: SEVERITY_WARNING, summary: 'Deprecated', detail: String(NULL_DATA_SOURCE.deprecationMessage) }] };
    },

    /** @param {any} req */
    UpgradeResourceState(req) {
      const version = Number(req.version);
      note('UpgradeResourceState', { type_name: req.type_name, version });
      if (req.type_name !== 'null_resource') return { diagnostics: [resourceNotFound(req.type_name)] };
      const raw = req.raw_state || {};
      if (version > 0) {
        return {
          diagnostics: [
            errorDiag(
              'Unable to Read Previously Saved State for UpgradeResourceState',
              `The stored state has schema version ${version}, newer than this provider's version 0.`,
            ),
          ],
        };
      }
      if (!raw.json || raw.json.length === 0) {
        const hasFlatmap = raw.flatmap && Object.keys(raw.flatmap).length > 0;
        if (hasFlatmap) {
          return {
            diagnostics: [
              errorDiag(
                'Unable to Read Previously Saved State for UpgradeResourceState',
                'flatmap states cannot be unmarshaled, only states written by Terraform 0.12 and higher can be unmarshaled',
              ),
            ],
          };
        }
        return { upgraded_state: V.encodeDynamic(null), diagnostics: [] };
      }
      const state = V.fromJSON(RESOURCE_TYPE, JSON.parse(Buffer.from(raw.json).toString('utf8')));
      return { upgraded_state: V.encodeDynamic(state), diagnostics: [] };
    },

    /** @param {any} req */
    ReadResource(req) {
      if (req.type_name !== 'null_resource') return { diagnostics: [resourceNotFound(req.type_name)] };
      const current = V.decodeDynamic(RESOURCE_TYPE, req.current_state);
      note('ReadResource', { type_name: req.type_name, current_state: V.toLoggable(current), private: privText(req.private) });
      return { new_state: V.encodeDynamic(current), private: req.private, diagnostics: [] };
    },

    /** @param {any} req */
    PlanResourceChange(req) {
      if (req.type_name !== 'null_resource') return { diagnostics: [resourceNotFound(req.type_name)] };
      const prior = /** @type {Record<string, Value> | null} */ (V.decodeDynamic(RESOURCE_TYPE, req.prior_state));
      const proposed = /** @type {Record<string, Value> | null} */ (V.decodeDynamic(RESOURCE_TYPE, req.proposed_new_state));
      const config = /** @type {Record<string, Value> | null} */ (V.decodeDynamic(RESOURCE_TYPE, req.config));
      /** @param {Record<string, unknown>} extra */
      const done = (extra) =>
        note('PlanResourceChange', {
          type_name: req.type_name,
          prior_state: V.toLoggable(prior),
          proposed_new_state: V.toLoggable(proposed),
          config: V.toLoggable(config),
          prior_private: privText(req.prior_private),
          ...extra,
        });

      if (proposed === null) {
        // Destroy: the framework plans a null object and passes private data through.
        done({ planned_state: null, requires_replace: [] });
        return { planned_state: V.encodeDynamic(null), requires_replace: [], planned_private: req.prior_private, diagnostics: [] };
      }
      if (config === null) throw new Error('PlanResourceChange: configuration is null while the proposed new state is not');

      const planned = { ...proposed };
      // terraform-plugin-framework marks computed attributes that are null in config as unknown
      // whenever the plan differs from the prior state (always on create).
      if (prior === null || !V.equal(proposed, prior)) {
        if (config.id === null) planned.id = V.UNKNOWN;
      }
      // id: UseStateForUnknown.
      if (prior !== null && prior.id !== null && V.isUnknown(planned.id) && !V.isUnknown(config.id)) {
        planned.id = prior.id;
      }
      // triggers: RequiresReplaceIfValuesNotNull.
      const requiresReplace = prior !== null && triggersRequireReplace(prior.triggers, config.triggers) ? [{ steps: [{ attribute_name: 'triggers' }] }] : [];

      done({ planned_state: V.toLoggable(planned), requires_replace: requiresReplace.length ? [['triggers']] : [] });
      return {
        planned_state: V.encodeDynamic(planned),
        requires_replace: requiresReplace,
        planned_private: req.prior_private,
        diagnostics: [],
      };
    },

    /** @param {any} req */
    ApplyResourceChange(req) {
      if (req.type_name !== 'null_resource') return { diagnostics: [resourceNotFound(req.type_name)] };
      const prior = /** @type {Record<string, Value> | null} */ (V.decodeDynamic(RESOURCE_TYPE, req.prior_state));
      const planned = /** @type {Record<string, Value> | null} */ (V.decodeDynamic(RESOURCE_TYPE, req.planned_state));
      /** @type {Record<string, Value> | null} */
      let next;
      let action;
      if (planned === null) {
        action = 'delete';
        next = null;
      } else if (prior === null) {
        action = 'create';
        next = { ...planned, id: randomId() };
      } else {
        action = 'update';
        next = { ...planned };
      }
      note('ApplyResourceChange', {
        type_name: req.type_name,
        action,
        prior_state: V.toLoggable(prior),
        planned_state: V.toLoggable(planned),
        new_state: V.toLoggable(next),
        planned_private: privText(req.planned_private),
      });
      if (next !== null && !V.isWhollyKnown(next)) {
        return {
          diagnostics: [
            errorDiag('Provider returned invalid result object after apply', 'After the apply operation, the provider still indicated an unknown value.'),
          ],
        };
      }
      return {
        new_state: V.encodeDynamic(next),
        private: action === 'delete' ? Buffer.alloc(0) : req.planned_private,
        diagnostics: [],
      };
    },

    /** @param {any} req */
    ImportResourceState(req) {
      note('ImportResourceState', { type_name: req.type_name, id: req.id });
      return {
        imported_resources: [],
        diagnostics: [
          errorDiag(
            'Resource Import Not Implemented',
            'This resource does not support import. Please contact the provider developer for additional information.',
          ),
        ],
      };
    },

    /** @param {any} req */
    ReadDataSource(req) {
      if (req.type_name !== 'null_data_source') return { diagnostics: [dataSourceNotFound(req.type_name)] };
      const config = /** @type {Record<string, Value>} */ (V.decodeDynamic(DATA_SOURCE_TYPE, req.config));
      const state = {
        has_computed_default: config.has_computed_default === null ? 'default' : config.has_computed_default,
        id: 'static',
        inputs: config.inputs,
        outputs: config.inputs,
        random: randomId(),
      };
      note('ReadDataSource', { type_name: req.type_name, state: V.toLoggable(state) });
      return { state: V.encodeDynamic(state), diagnostics: [] };
    },

    /** @param {any} _req */
    Stop(_req) {
      note('Stop');
      return { Error: '' };
    },
  };
}

/** @param {Uint8Array | null | undefined} b private bytes as text, for logs */
function privText(b) {
  return b && b.length ? Buffer.from(b).toString('utf8') : '';
}

module.exports = { createProvider, triggersRequireReplace, randomId, RESOURCE_TYPE };
