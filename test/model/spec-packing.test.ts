/**
 * How a large host's spec is stored and read back (model/spec-packing.ts, model/terraform-template.ts): Terraform keeps
 * it gzipped and base64-encoded, a spec as JSON passes as it is, and anything that cannot be read is a problem in
 * words, never a throw.
 */
import { gzipSync } from 'node:zlib';
import { COMPRESSED_SPEC_PREFIX, SPEC_MAX_BYTES, gunzipBase64, specTextOfTrigger, triggersFileExpression, triggersFileOf } from '../../model';

const packed = (text: string | Buffer) => gzipSync(text).toString('base64');
const spec = JSON.stringify({ kind: 'balancer', name: 'lb1', vips: [{ name: 'web', ip: '10.0.1.100' }] });

test('GIVEN a spec as JSON or compressed WHEN read as a trigger THEN both give the JSON, and compressed text begins with the prefix', () => {
  expect(packed(spec).startsWith(COMPRESSED_SPEC_PREFIX)).toBe(true);
  expect(specTextOfTrigger(spec)).toEqual({ text: spec });
  expect(specTextOfTrigger(packed(spec))).toEqual({ text: spec });
});

test.each([
  ['not gzip', `${COMPRESSED_SPEC_PREFIX}not-gzip-at-all`, /^cannot be decompressed: /],
  ['cut short', packed(spec).slice(0, 24), /^cannot be decompressed: /],
  [
    'larger than the agent reads',
    packed(Buffer.alloc(SPEC_MAX_BYTES + 1, ' ')),
    /^is larger than 64 MiB once decompressed, more than any balancer needs; it was not read$/,
  ],
])('GIVEN a compressed spec %s WHEN read THEN a problem in words', (_, trigger, problem) => {
  const read = specTextOfTrigger(trigger);
  expect(read).toEqual({ problem: expect.stringMatching(problem) });
  expect(gunzipBase64(trigger)).toEqual(read);
});

test('GIVEN trigger files WHEN the attribute is written and read back THEN the same files, and a path that leaves the folder or another expression is refused', () => {
  const files = {
    triggers: 'tula-dsr-triggers/lb1_host_0A1B2C3D/0123456789abcdef.json',
    spec: 'tula-dsr-triggers/lb1_host_0A1B2C3D/0123456789abcdef.spec.json',
  };
  const expression = triggersFileExpression(files);
  expect(expression).toBe(
    '${merge(jsondecode(file("${path.module}/tula-dsr-triggers/lb1_host_0A1B2C3D/0123456789abcdef.json")), ' +
      '{ spec = base64gzip(file("${path.module}/tula-dsr-triggers/lb1_host_0A1B2C3D/0123456789abcdef.spec.json")) })}',
  );
  expect(triggersFileOf(expression)).toEqual(files);
  expect(triggersFileOf(triggersFileExpression({ ...files, spec: 'tula-dsr-triggers/../../etc/passwd' }))).toBeNull();
  expect(triggersFileOf(triggersFileExpression({ ...files, triggers: './x.json' }))).toBeNull();
  expect(triggersFileOf('${jsondecode(file("${path.module}/tula-dsr-triggers/a/b.json"))}')).toBeNull();
  expect(triggersFileOf({ spec: '{}' })).toBeNull();
});
