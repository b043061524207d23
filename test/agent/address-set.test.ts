import { AddressSet, addressSetOf } from '../../agent/tasks/common';
import { canonicalIp } from '../../agent/facts/parsers';

describe('AddressSet', () => {
  const set = new AddressSet([
    { ip: '10.0.0.1', prefix: 32, dev: 'lo' },
    { ip: '2001:DB8:0:0::1', prefix: 128, dev: 'eth0' },
  ]);

  it('finds an address by its canonical text, device and prefix', () => {
    expect(set.has({ ip: '10.0.0.1', prefix: 32, dev: 'lo' })).toBe(true);
    // the host prints RFC 5952 text; a spec may write the same address otherwise
    expect(set.has({ ip: '2001:db8::1', prefix: 128, dev: 'eth0' })).toBe(true);
    expect(set.has({ ip: '2001:0db8::0:1', prefix: 128, dev: 'eth0' })).toBe(true);
  });

  it('tells apart other devices, prefixes and addresses', () => {
    expect(set.has({ ip: '10.0.0.1', prefix: 32, dev: 'eth0' })).toBe(false);
    expect(set.has({ ip: '10.0.0.1', prefix: 24, dev: 'lo' })).toBe(false);
    expect(set.has({ ip: '10.0.0.2', prefix: 32, dev: 'lo' })).toBe(false);
    expect(set.has({ ip: '2001:db8::2', prefix: 128, dev: 'eth0' })).toBe(false);
  });

  it('builds one set per list', () => {
    const list = [{ ip: '10.0.0.9', prefix: 32, dev: 'lo' }];
    expect(addressSetOf(list)).toBe(addressSetOf(list));
    expect(addressSetOf(list).has(list[0])).toBe(true);
  });
});

describe('canonicalIp', () => {
  it('leaves IPv4 and anything without a colon as it is, and writes IPv6 in RFC 5952 form', () => {
    expect(canonicalIp('10.1.2.3')).toBe('10.1.2.3');
    expect(canonicalIp('010.1.2.3')).toBe('010.1.2.3');
    expect(canonicalIp('not-an-address')).toBe('not-an-address');
    expect(canonicalIp('FD00:0:0:0::10')).toBe('fd00::10');
    expect(canonicalIp('fd00::zz')).toBe('fd00::zz');
  });
});
