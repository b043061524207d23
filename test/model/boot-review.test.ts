/**
 * A backend's addresses and boot script in the plan review (model/review.ts): up to REVIEW_ADDRESSES_IN_FULL_MAX
 * addresses `addresses` lists each as `ADDRESS/PREFIX dev DEVICE` and the `boot_unit` review holds the script byte
 * for byte; past it, `addresses` lists each as `ADDRESS DEVICE`, the script's address lines give way to one line with
 * their count and sha256, and everything else stays byte for byte the file's. Adding a VIP then changes that one
 * line of `boot_unit` and adds one line to `addresses`.
 */
import { createHash } from 'node:crypto';
import { BACKEND_BOOT_SCRIPT, REVIEW_ADDRESSES_IN_FULL_MAX, BackendHostSpec, planBackendHost, renderBackendHostReview } from '../../model';
import { backendHostSpec } from '../support/render-fixtures';

const ip = (i: number) => `10.1.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const host = (count: number): BackendHostSpec =>
  backendHostSpec(
    'web1',
    Array.from({ length: count }, (_, i) => ({ path: `t/lb1/v${i}`, ip: ip(i), port: 80, protocol: 'tcp' as const, mode: 'l2' as const })),
  );
const script = (spec: BackendHostSpec) => planBackendHost(spec).files.find((f) => f.path === BACKEND_BOOT_SCRIPT)!.content;
/** The review's copy of the boot script: what follows its `# <path>` header line in `boot_unit`. */
const reviewedScript = (spec: BackendHostSpec) => renderBackendHostReview(spec).boot_unit.split(`# ${BACKEND_BOOT_SCRIPT}\n`)[1];
const isAddressLine = (line: string) => line.startsWith("\t'addr replace ");

test('GIVEN a backend with as many addresses as the review shows WHEN reviewed THEN boot_unit holds the boot script byte for byte', () => {
  const spec = host(REVIEW_ADDRESSES_IN_FULL_MAX);
  expect(script(spec).split('\n').filter(isAddressLine)).toHaveLength(REVIEW_ADDRESSES_IN_FULL_MAX);
  expect(reviewedScript(spec)).toBe(script(spec));
  const addresses = renderBackendHostReview(spec).addresses.trimEnd().split('\n');
  expect(addresses).toHaveLength(REVIEW_ADDRESSES_IN_FULL_MAX);
  expect(addresses.slice(0, 2)).toEqual(['10.1.0.1/32 dev lo', '10.1.0.2/32 dev lo']);
});

test('GIVEN a backend with one address more WHEN reviewed THEN its address lines give way to one line with their count and sha256, the rest byte for byte', () => {
  const spec = host(REVIEW_ADDRESSES_IN_FULL_MAX + 1);
  const file = script(spec).split('\n');
  const reviewed = reviewedScript(spec).split('\n');
  const addressLines = file.filter(isAddressLine);
  expect(addressLines).toHaveLength(REVIEW_ADDRESSES_IN_FULL_MAX + 1);
  const digest = createHash('sha256')
    .update(addressLines.join('\n') + '\n')
    .digest('hex');
  const at = file.indexOf(addressLines[0]);
  expect(reviewed).toEqual([
    ...file.slice(0, at),
    `\t# 1001 lines not shown: 'addr replace ADDRESS/32 dev DEVICE' \\ (/128 for IPv6) for each line ADDRESS DEVICE under "addresses", in its order (sha256 ${digest})`,
    ...file.slice(at + addressLines.length),
  ]);
  // the lines shown in their place are the addresses the review lists, in its order, each after a line that says how
  const [note, ...addresses] = renderBackendHostReview(spec).addresses.trimEnd().split('\n');
  expect(note).toBe('# ADDRESS DEVICE: each address is a /32 (IPv4) or /128 (IPv6) on that device');
  expect(addressLines.map((l) => l.slice("\t'addr replace ".length, -"' \\".length))).toEqual(
    addresses.map((line) => line.replace(/^(\S+) (\S+)$/, '$1/32 dev $2')),
  );
});

test('GIVEN a backend of 2,000 addresses WHEN one VIP is added THEN the review changes one line of boot_unit and adds one line to addresses', () => {
  const before = renderBackendHostReview(host(2000));
  const after = renderBackendHostReview(host(2001));
  const changed = (a: string, b: string) => {
    const [x, y] = [a.split('\n'), b.split('\n')];
    return { removed: x.filter((l) => !y.includes(l)), added: y.filter((l) => !x.includes(l)) };
  };
  const boot = changed(before.boot_unit, after.boot_unit);
  expect(boot.removed).toEqual([expect.stringMatching(/^\t# 2000 lines not shown: .* \(sha256 [0-9a-f]{64}\)$/)]);
  expect(boot.added).toEqual([expect.stringMatching(/^\t# 2001 lines not shown: .* \(sha256 [0-9a-f]{64}\)$/)]);
  expect(changed(before.addresses, after.addresses)).toEqual({ removed: [], added: [`${ip(2000)} lo`] });
  // the review is a fraction of the script it stands for
  expect(after.boot_unit.length).toBeLessThan(script(host(2001)).length / 20);
});
