// @ts-check
'use strict';
/**
 * Terraform (cty) values as the plugin protocol carries them, for the small set of types the
 * null provider needs: string, bool, map(T) and object({...}).
 *
 * Representation in JS:
 *   - null                        -> cty null (msgpack nil)
 *   - an ExtData of type 0 or 12  -> an unknown value; type 12 is an unknown with refinements
 *                                    ("not null", "prefix ..."). The raw extension is kept as-is
 *                                    so it is sent back byte-for-byte.
 *   - string / boolean            -> known primitive
 *   - plain object                -> known map or object
 *
 * LAB AND TEST SUPPORT ONLY: never shipped, and not the provider.
 */
const { encode, decode, ExtData } = require('@msgpack/msgpack');

/** msgpack extension code cty uses for an unknown value. */
const EXT_UNKNOWN = 0;
/** msgpack extension code cty uses for an unknown value that carries refinements. */
const EXT_UNKNOWN_REFINED = 12;

/** A plain unknown, encoded exactly like go-cty does: fixext1, type 0, one zero byte. */
const UNKNOWN = new ExtData(EXT_UNKNOWN, Uint8Array.of(0));

/**
 * A cty type in its JSON form, as also sent in Schema.Attribute.type.
 * @typedef {'string' | 'bool' | ['map', any] | ['object', Record<string, any>]} CtyType
 */
/** @typedef {null | string | boolean | InstanceType<typeof ExtData> | { [key: string]: any }} Value */

/** @param {unknown} v @returns {v is InstanceType<typeof ExtData>} */
function isUnknown(v) {
  return v instanceof ExtData && (v.type === EXT_UNKNOWN || v.type === EXT_UNKNOWN_REFINED);
}

/** @param {unknown} v @returns {v is Record<string, unknown>} */
function isPlainObject(v) {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Uint8Array) && !(v instanceof ExtData);
}

/** @param {(string|number)[]} path */
function fmtPath(path) {
  return path.length === 0 ? '(root)' : path.map((p) => (typeof p === 'number' ? `[${p}]` : `.${p}`)).join('');
}

/**
 * Check that a decoded msgpack value conforms to a type, and normalise it.
 * Objects missing attributes get nulls; unexpected attributes are an error (as in go-cty).
 * @param {CtyType} type
 * @param {unknown} v
 * @param {(string|number)[]} [path]
 * @returns {Value}
 */
function conform(type, v, path = []) {
  if (v === null || v === undefined) return null;
  if (v instanceof ExtData) {
    if (v.type === EXT_UNKNOWN || v.type === EXT_UNKNOWN_REFINED) return v;
    throw new Error(`${fmtPath(path)}: unsupported msgpack extension type ${v.type}`);
  }
  if (type === 'string') {
    if (typeof v !== 'string') throw new Error(`${fmtPath(path)}: expected string, got ${typeof v}`);
    return v;
  }
  if (type === 'bool') {
    if (typeof v !== 'boolean') throw new Error(`${fmtPath(path)}: expected bool, got ${typeof v}`);
    return v;
  }
  if (Array.isArray(type) && type[0] === 'map') {
    if (!isPlainObject(v)) throw new Error(`${fmtPath(path)}: expected map`);
    /** @type {Record<string, Value>} */
    const out = {};
    for (const [k, el] of Object.entries(v)) out[k] = conform(type[1], el, [...path, k]);
    return out;
  }
  if (Array.isArray(type) && type[0] === 'object') {
    if (!isPlainObject(v)) throw new Error(`${fmtPath(path)}: expected object`);
    const attrs = type[1];
    for (const k of Object.keys(v)) {
      if (!(k in attrs)) throw new Error(`${fmtPath([...path, k])}: unsupported attribute "${k}"`);
    }
    /** @type {Record<string, Value>} */
    const out = {};
    for (const [k, t] of Object.entries(attrs)) out[k] = conform(t, v[k], [...path, k]);
    return out;
  }
  throw new Error(`${fmtPath(path)}: unsupported type ${JSON.stringify(type)}`);
}

/**
 * Like conform(), for a JSON state (UpgradeResourceState raw_state.json): attributes that the
 * schema does not know are ignored, as terraform-plugin-framework does. JSON has no unknowns.
 * @param {CtyType} type
 * @param {unknown} v
 * @param {(string|number)[]} [path]
 * @returns {Value}
 */
function fromJSON(type, v, path = []) {
  if (v === null || v === undefined) return null;
  if (Array.isArray(type) && type[0] === 'object') {
    if (!isPlainObject(v)) throw new Error(`${fmtPath(path)}: expected object`);
    /** @type {Record<string, Value>} */
    const out = {};
    for (const [k, t] of Object.entries(type[1])) out[k] = fromJSON(t, v[k], [...path, k]);
    return out;
  }
  if (Array.isArray(type) && type[0] === 'map') {
    if (!isPlainObject(v)) throw new Error(`${fmtPath(path)}: expected map`);
    /** @type {Record<string, Value>} */
    const out = {};
    for (const [k, el] of Object.entries(v)) out[k] = fromJSON(type[1], el, [...path, k]);
    return out;
  }
  return conform(type, v, path);
}

/**
 * Decode a DynamicValue message. A missing message or empty payload is null.
 * @param {CtyType} type
 * @param {{ msgpack?: Uint8Array, json?: Uint8Array } | null | undefined} dv
 * @returns {Value}
 */
function decodeDynamic(type, dv) {
  if (!dv) return null;
  if (dv.msgpack && dv.msgpack.length > 0) return conform(type, decode(dv.msgpack));
  if (dv.json && dv.json.length > 0) return fromJSON(type, JSON.parse(Buffer.from(dv.json).toString('utf8')));
  return null;
}

/**
 * Encode a value as a DynamicValue message (msgpack only, as Terraform expects).
 * @param {Value} v
 */
function encodeDynamic(v) {
  return { msgpack: Buffer.from(encode(v)) };
}

/**
 * Value equality as terraform-plugin-framework's Equal() sees it: null equals null, unknown
 * equals unknown, known values compare deeply.
 * @param {Value} a
 * @param {Value} b
 * @returns {boolean}
 */
function equal(a, b) {
  if (a === null || b === null) return a === b;
  if (isUnknown(a) || isUnknown(b)) return isUnknown(a) && isUnknown(b);
  if (isPlainObject(a) && isPlainObject(b)) {
    const ka = Object.keys(a);
    const kb = Object.keys(b);
    if (ka.length !== kb.length) return false;
    return ka.every((k) => Object.prototype.hasOwnProperty.call(b, k) && equal(/** @type {Value} */ (a[k]), /** @type {Value} */ (b[k])));
  }
  return a === b;
}

/**
 * True if the value is known all the way down.
 * @param {Value} v
 * @returns {boolean}
 */
function isWhollyKnown(v) {
  if (isUnknown(v)) return false;
  if (isPlainObject(v)) return Object.values(v).every((el) => isWhollyKnown(/** @type {Value} */ (el)));
  return true;
}

/**
 * A JSON-friendly rendering for logs: unknowns become {"$unknown": true} (plus
 * "refined": true when Terraform sent refinements such as a known prefix).
 * @param {Value} v
 * @returns {unknown}
 */
function toLoggable(v) {
  if (isUnknown(v)) return v.type === EXT_UNKNOWN_REFINED ? { $unknown: true, refined: true } : { $unknown: true };
  if (isPlainObject(v)) {
    /** @type {Record<string, unknown>} */
    const out = {};
    for (const [k, el] of Object.entries(v)) out[k] = toLoggable(/** @type {Value} */ (el));
    return out;
  }
  return v;
}

module.exports = { UNKNOWN, isUnknown, conform, fromJSON, decodeDynamic, encodeDynamic, equal, isWhollyKnown, toLoggable };
