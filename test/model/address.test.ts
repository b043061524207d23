/** Addresses: strict parsing on top of ipaddr.js, canonical text, prefixes and the addresses DSR refuses. */
import { compareAddresses, parseCidr, parseIpAddress, specialAddress, cidrContains, networkOf, broadcastOf } from '../../model';

describe('parseIpAddress', () => {
  test.each([
    ['10.0.1.100', 4, '10.0.1.100'],
    ['2001:DB8:0:0:0:0:0:1', 6, '2001:db8::1'],
    ['2001:db8::10', 6, '2001:db8::10'],
    ['::ffff:10.0.0.1', 6, '::ffff:a00:1'],
  ])('GIVEN %s THEN family %d and canonical text %s', (text, family, canonical) => {
    expect(parseIpAddress(text)).toMatchObject({ family, text: canonical });
  });

  test.each(['010.0.0.1', '10.1', '0x0a.0.0.1', '256.0.0.1', '1.2.3.4.5', 'fe80::1%eth0', '1::2::3', ' 10.0.0.1', '10.0.0.1 ', ''])(
    'GIVEN %p (shorthand, octal, hex, zone id or junk) THEN it is refused',
    (text) => {
      expect(parseIpAddress(text)).toBeNull();
    },
  );
});

describe('specialAddress', () => {
  test.each([
    ['0.0.0.0', 'the unspecified address 0.0.0.0'],
    ['127.0.0.5', 'a loopback address (127.0.0.0/8)'],
    ['239.1.1.1', 'a multicast address (224.0.0.0/4)'],
    ['::', 'the unspecified address ::'],
    ['::1', 'the loopback address ::1'],
    ['fe80::1', 'a link-local address (fe80::/10), which is only valid on one link'],
    ['ff02::1', 'a multicast address (ff00::/8)'],
    ['::ffff:10.0.0.1', 'an IPv4-mapped address (::ffff:0:0/96); write the IPv4 address itself'],
  ])('GIVEN %s THEN it is %s', (text, why) => {
    expect(specialAddress(parseIpAddress(text)!)).toBe(why);
  });

  test.each(['10.0.1.1', '192.0.2.7', '2001:db8::1', 'fd00::1'])('GIVEN the ordinary unicast address %s THEN it is accepted', (text) => {
    expect(specialAddress(parseIpAddress(text)!)).toBeNull();
  });
});

describe('prefixes and order', () => {
  test('GIVEN a /24 THEN containment, network and broadcast follow it', () => {
    const cidr = parseCidr('10.0.1.0/24')!;
    expect(cidrContains(cidr, parseIpAddress('10.0.1.200')!)).toBe(true);
    expect(cidrContains(cidr, parseIpAddress('10.0.2.1')!)).toBe(false);
    expect(cidrContains(cidr, parseIpAddress('::ffff:10.0.1.1')!)).toBe(false);
    expect(networkOf(parseCidr('10.0.1.77/24')!).text).toBe('10.0.1.0');
    expect(broadcastOf(cidr)!.text).toBe('10.0.1.255');
  });

  test('GIVEN IPv6 prefixes THEN containment works and there is no broadcast', () => {
    const cidr = parseCidr('2001:db8:1::/64')!;
    expect(cidrContains(cidr, parseIpAddress('2001:db8:1::abcd')!)).toBe(true);
    expect(cidrContains(cidr, parseIpAddress('2001:db8:2::1')!)).toBe(false);
    expect(broadcastOf(cidr)).toBeNull();
  });

  test.each(['10.0.1.0/33', '10.0.1.0/024', '2001:db8::/129', '10.0.1/24'])('GIVEN the bad prefix %s THEN it is refused', (text) => {
    expect(parseCidr(text)).toBeNull();
  });

  test('GIVEN mixed addresses and a token THEN IPv4 sorts first, numerically, then IPv6, then the rest', () => {
    expect(['2001:db8::2', '10.0.0.10', '${TfToken[1]}', '10.0.0.9', '2001:db8::1'].sort(compareAddresses)).toEqual([
      '10.0.0.9',
      '10.0.0.10',
      '2001:db8::1',
      '2001:db8::2',
      '${TfToken[1]}',
    ]);
  });
});
