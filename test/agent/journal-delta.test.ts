/**
 * The journal an apply writes before its first change holds only what the recorded state lacks (journalDelta): an
 * interrupted run's state merged with it is what merging the whole next state gives, so a one-VIP change to 10,000
 * VIPs journals a few lines instead of a megabyte.
 */
import { HostState, journalDelta, mergeJournal } from '../../agent/state';

const address = (i: number) => ({ ip: `10.0.${Math.floor(i / 250)}.${(i % 250) + 1}`, prefix: 32, dev: 'lo' });

function state(over: Partial<HostState> = {}): HostState {
  return {
    version: 2,
    kind: 'backend',
    name: 'be1',
    generation: 'g1',
    addresses: [0, 1, 2].map(address),
    tunnels: [{ name: 'ipip0', local: '10.1.0.2', remote: '0.0.0.0' }] as HostState['tunnels'],
    files: ['/etc/a', '/etc/b'],
    dirs: ['/etc/tula-dsr'],
    originalSysctls: { 'net.ipv4.conf.all.arp_ignore': '0' },
    modules: ['ipip'],
    nft: { 'ip tula_mss': { rulesetHash: 'r1', listingHash: 'l1' } },
    unit: { name: 'tula-dsr-backend.service', enabled: true },
    ...over,
  };
}

describe('journalDelta', () => {
  const cases: [string, HostState | null, HostState][] = [
    ['no state yet', null, state()],
    ['the same host again', state(), state({ generation: 'g2' })],
    [
      'a VIP added, a file, a folder, a sysctl, a table, the runtime',
      state(),
      state({
        generation: 'g2',
        addresses: [0, 1, 2, 3].map(address),
        files: ['/etc/a', '/etc/b', '/etc/c'],
        dirs: ['/etc/tula-dsr', '/etc/x'],
        originalSysctls: { 'net.ipv4.conf.all.arp_ignore': '1', 'net.ipv4.conf.all.arp_announce': '0' },
        nft: { 'ip tula_mss': { rulesetHash: 'pending', listingHash: 'pending' }, 'ip6 tula_mss': { rulesetHash: 'pending', listingHash: 'pending' } },
        runtime: { service: 'systemd' },
      }),
    ],
    ['a VIP removed, no unit before', state({ unit: null }), state({ generation: 'g2', addresses: [0, 1].map(address) })],
  ];

  test.each(cases)('GIVEN %s WHEN the delta is merged THEN the result is that of merging the whole next state', (_, before, next) => {
    expect(mergeJournal(before, journalDelta(before, next))).toEqual(mergeJournal(before, next));
  });

  test('GIVEN 10,000 recorded VIPs WHEN one is added THEN the journal lists only that one', () => {
    const big = state({ addresses: Array.from({ length: 10000 }, (_, i) => address(i)) });
    const delta = journalDelta(big, { ...big, generation: 'g2', addresses: [...big.addresses, address(10000)] });
    expect(delta.addresses).toEqual([address(10000)]);
    expect(JSON.stringify(delta).length).toBeLessThan(1000);
  });
});
