/**
 * The state file's text (stateFileText): JSON that parses back to the state, with a line per array element (the
 * line patches of a 10,000-address state touch a line per changed address), and the nft records on lines of their
 * own, where the facts script's grep and sed find them.
 */
import { HostState, readHostState } from '../../agent/state';
import { stateFileText } from '../../agent/tasks/state-file';

const HASH = 'a'.repeat(64);

function state(addresses: number): HostState {
  return {
    version: 2,
    kind: 'balancer',
    name: 'lb',
    generation: 'b'.repeat(64),
    addresses: Array.from({ length: addresses }, (_, i) => ({ ip: `10.214.${i >> 8}.${i & 255}`, prefix: 32, dev: 'eth0' })),
    tunnels: [],
    files: ['/etc/tula-dsr/balancer.nft', '/etc/odd "name" it\'s'],
    dirs: [],
    originalSysctls: { 'net.ipv4.conf.all.rp_filter': '1', 'net.ipv4.conf.ipip0.rp_filter': null },
    modules: [],
    nft: { 'netdev tula_dsr': { rulesetHash: HASH, listingHash: 'stale: changed incrementally since' } },
    unit: { name: 'tula-dsr-balancer.service', enabled: false },
    runtime: undefined,
  };
}

describe('stateFileText', () => {
  test('GIVEN a state WHEN rendered THEN it parses back to the same state, and reads as a valid state file', () => {
    const s = state(300);
    const text = stateFileText(s);
    expect(JSON.parse(text)).toEqual(JSON.parse(JSON.stringify(s)));
    expect(readHostState(text)).toEqual({ state: JSON.parse(JSON.stringify(s)) });
    expect(text.endsWith('}\n')).toBe(true);
    expect(text).not.toContain('undefined');
  });

  test('GIVEN 10,000 addresses THEN one line each: a fifth of the lines of JSON.stringify(…, null, 2), and fewer bytes', () => {
    const s = state(10_000);
    const text = stateFileText(s);
    const indented = JSON.stringify(s, null, 2) + '\n';
    const lines = text.split('\n');
    expect(lines).toContain('    {"ip":"10.214.20.15","prefix":32,"dev":"eth0"},');
    expect(lines.length).toBeLessThan(10_000 + 40);
    expect(indented.split('\n').length).toBeGreaterThan(50_000);
    expect(text.length).toBeLessThan(indented.length * 0.7);
  });

  test('THEN the nft records are on lines of their own, as the facts script greps and seds them', () => {
    const text = stateFileText(state(2));
    // the patterns of generationFactsCommands and generationRearmCommands (agent/facts/nft-generation.ts)
    expect(
      text
        .split('\n')
        .map((l) => /^ *"rulesetHash": "([0-9a-f]{64})".*/.exec(l)?.[1])
        .filter(Boolean),
    ).toEqual([HASH]);
    expect(text).toContain(`"${HASH}"`);
    expect(text).toMatch(/^ *"listingHash": "stale: changed incrementally since"$/m);
  });

  test('GIVEN empty arrays and objects THEN they render as [] and {}, as JSON.stringify does', () => {
    const text = stateFileText({ ...state(0), originalSysctls: {}, nft: {}, unit: null });
    expect(text).toContain('  "addresses": [],\n');
    expect(text).toContain('  "originalSysctls": {},\n');
    expect(text).toContain('  "nft": {},\n');
    expect(text).toContain('  "unit": null\n');
  });
});
