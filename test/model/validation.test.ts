/**
 * Model-level validation: the strict schemas (what the agent applies) plus the cross-object checks, reporting every
 * problem at once as `path: field: message`, where the message quotes the bad value and says what is allowed.
 */
import { ALGORITHMS, MODES, PROTOCOLS, SpecError, StrictSpecSchemas, checkBackendHostSpec, checkBalancerSpec, checkSpec, formatIssue } from '../../model';
import { parseHostSpec } from '../../agent/spec-input';
import { HOST_KEY, lb1Json } from '../support/common';
import { primarySide } from '../../lab/pair-spec';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

/** A valid balancer spec as JSON (what the agent receives), two backends on the balancer's /24. */
function base(): Json {
  return {
    ...lb1Json(),
    address: '10.0.1.2',
    subnet: '10.0.1.0/24',
    vips: [
      {
        path: 's/web',
        name: 'web',
        ip: '10.0.1.100',
        port: 80,
        backends: [
          { path: 's/web/web1', name: 'web1', ip: '10.0.1.11' },
          { path: 's/web/web2', name: 'web2', ip: '10.0.1.12', weight: 2 },
        ],
      },
    ],
  };
}

/** Every problem in a balancer spec, formatted as the agent prints them; [] when it is valid. */
function problems(input: unknown): string[] {
  const result = checkSpec(StrictSpecSchemas.BalancerSpecSchema, input, '(spec)', (v) => checkBalancerSpec(v));
  return result.ok ? [] : result.issues.map(formatIssue);
}

const variant = (mutate: (s: Json) => void): Json => {
  const s = base();
  mutate(s);
  return s;
};
const vip0 = (s: Json) => s.vips[0];
const be0 = (s: Json) => s.vips[0].backends[0];

test('GIVEN the base spec WHEN checked THEN it has no problem (the variants below differ from it in one place)', () => {
  expect(problems(base())).toEqual([]);
});

describe('IP addresses', () => {
  const notIp = (v: string) => `"${v}" is not an IP address; use an IPv4 address such as 10.0.1.100 or an IPv6 address such as fd00:1::100`;
  test.each([
    ['10.0.1', notIp('10.0.1')],
    ['10.0.1.256', notIp('10.0.1.256')],
    ['010.0.1.1', notIp('010.0.1.1')],
    ['web.example.com', notIp('web.example.com')],
    ['fd00::1%eth0', notIp('fd00::1%eth0')],
    ['fd00::1::2', notIp('fd00::1::2')],
    ['0.0.0.0', '"0.0.0.0" is the unspecified address 0.0.0.0; use a unicast IPv4 address'],
    ['0.1.2.3', '"0.1.2.3" is in 0.0.0.0/8 ("this network"); use a unicast IPv4 address'],
    ['127.0.0.1', '"127.0.0.1" is a loopback address (127.0.0.0/8); use a unicast IPv4 address'],
    ['224.0.0.5', '"224.0.0.5" is a multicast address (224.0.0.0/4); use a unicast IPv4 address'],
    ['239.255.255.250', '"239.255.255.250" is a multicast address (224.0.0.0/4); use a unicast IPv4 address'],
    ['240.0.0.1', '"240.0.0.1" is a reserved address (240.0.0.0/4); use a unicast IPv4 address'],
    ['255.255.255.255', '"255.255.255.255" is the broadcast address; use a unicast IPv4 address'],
  ])('GIVEN VIP ip %j WHEN checked THEN %s', (ip, message) => {
    expect(problems(variant((s) => (vip0(s).ip = ip)))).toEqual([`s/web: ip: ${message}`]);
  });

  test.each([
    ['10.0.1.0', 'network'],
    ['10.0.1.255', 'broadcast'],
  ])("GIVEN VIP ip %s, the %s address of the balancer's subnet WHEN checked THEN it is refused", (ip, which) => {
    expect(problems(variant((s) => (vip0(s).ip = ip)))).toEqual([
      `s/web: ip: "${ip}" is the ${which} address of the balancer's subnet 10.0.1.0/24; use a host address`,
    ]);
  });

  test.each([
    ['10.0.1.0', 'network'],
    ['10.0.1.255', 'broadcast'],
  ])("GIVEN an L2 backend on the subnet's %s address WHEN checked THEN it is refused", (ip, which) => {
    expect(problems(variant((s) => (be0(s).ip = ip)))).toEqual([
      `s/web/web1: ip: "${ip}" is the ${which} address of the balancer's subnet 10.0.1.0/24; use a host address`,
    ]);
  });

  test('GIVEN a backend ip that is not IPv4 and a balancer address that is loopback WHEN checked THEN both are reported', () => {
    expect(
      problems(
        variant((s) => {
          be0(s).ip = '10.0.1.x';
          s.address = '127.0.0.2';
        }),
      ),
    ).toEqual([
      's/lb1: address: "127.0.0.2" is a loopback address (127.0.0.0/8); use a unicast IPv4 address',
      's/web/web1: ip: "10.0.1.x" is not an IP address; use an IPv4 address such as 10.0.1.100 or an IPv6 address such as fd00:1::100',
    ]);
  });
});

describe('IPv6 addresses', () => {
  const SPECIAL6 = [
    ['::', '"::" is the unspecified address ::; use a unicast IPv6 address'],
    ['::1', '"::1" is the loopback address ::1; use a unicast IPv6 address'],
    ['0:0:0:0:0:0:0:1', '"0:0:0:0:0:0:0:1" is the loopback address ::1; use a unicast IPv6 address'],
    ['fe80::1', '"fe80::1" is a link-local address (fe80::/10), which is only valid on one link; use a unicast IPv6 address'],
    ['febf::1', '"febf::1" is a link-local address (fe80::/10), which is only valid on one link; use a unicast IPv6 address'],
    ['ff02::1', '"ff02::1" is a multicast address (ff00::/8); use a unicast IPv6 address'],
    ['::ffff:10.0.1.5', '"::ffff:10.0.1.5" is an IPv4-mapped address (::ffff:0:0/96); write the IPv4 address itself: 10.0.1.5'],
  ];
  // an IPv6 VIP with IPv6 backends, on a balancer with an IPv6 subnet: the variants below differ from it in one place
  const base6 = () =>
    variant((s) => {
      s.ipv6Subnet = 'fd00:1::/64';
      vip0(s).ip = 'fd00:1::100';
      vip0(s).backends.forEach((b: Json, i: number) => (b.ip = `fd00:1::${11 + i}`));
    });
  const variant6 = (change: (s: Json) => void) => {
    const s = base6();
    change(s);
    return s;
  };

  test('GIVEN the IPv6 base spec WHEN checked THEN it has no problem', () => {
    expect(problems(base6())).toEqual([]);
  });

  test.each(SPECIAL6)('GIVEN VIP ip %j WHEN checked THEN %s', (ip, message) => {
    expect(problems(variant6((s) => (vip0(s).ip = ip)))).toEqual([`s/web: ip: ${message}`]);
  });

  test.each(SPECIAL6)('GIVEN backend ip %j WHEN checked THEN %s', (ip, message) => {
    expect(problems(variant6((s) => (be0(s).ip = ip)))).toContain(`s/web/web1: ip: ${message}`);
  });

  test.each([
    ['fd00:1::100', '10.0.1.11', 'IPv4', 'IPv6', 'ipv6Address'],
    ['10.0.1.100', 'fd00:1::11', 'IPv6', 'IPv4', 'address'],
  ])(
    'GIVEN VIP %s and a backend %s WHEN checked THEN the backend of the other family is refused with the reason',
    (vip, backend, backendFamily, vipFamily, field) => {
      const spec = variant6((s) => {
        vip0(s).ip = vip;
        vip0(s).backends.forEach((b: Json, i: number) => (b.ip = vip === '10.0.1.100' ? `10.0.1.${11 + i}` : `fd00:1::${11 + i}`));
        be0(s).ip = backend;
      });
      expect(problems(spec)).toEqual([
        `s/web/web1: ip: "${backend}" is an ${backendFamily} address, but VIP web (${vip}) is ${vipFamily}; a backend must be reached in its VIP's family: ` +
          `L3 tunnels carry IPv4 in IPv4 (ipip) and IPv6 in IPv6 (ip6tnl), and health probes go to the backend's address with the VIP written in its place, ` +
          `so give the backend its ${vipFamily} address (ip, or the BackendHost's ${field})`,
      ]);
    },
  );

  test("GIVEN an L2 IPv6 backend outside the balancer's ipv6Subnet WHEN checked THEN it is refused", () => {
    expect(problems(variant6((s) => (be0(s).ip = 'fd00:2::11')))).toEqual([
      `s/web/web1: ip: "fd00:2::11" is outside the balancer's subnet fd00:1::/64; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)`,
    ]);
  });

  test('GIVEN an IPv6 backend and only an IPv4 subnet WHEN checked THEN the IPv4 subnet does not judge it', () => {
    expect(problems(variant6((s) => (s.ipv6Subnet = undefined)))).toEqual([]);
  });

  test.each([
    ['subnet', 'fd00:1::/64', '"fd00:1::/64" is an IPv6 subnet; set it as ipv6Subnet (subnet is the IPv4 one)'],
    ['ipv6Subnet', '10.0.1.0/24', '"10.0.1.0/24" is an IPv4 subnet; set it as subnet (ipv6Subnet is the IPv6 one)'],
    ['ipv6Subnet', 'fd00:1::1/64', '"fd00:1::1/64" has host bits set; use fd00:1::/64'],
    ['ipv6Subnet', 'fd00:1::/128', '"fd00:1::/128" is not a valid IPv6 subnet; use CIDR notation with a prefix from /1 to /127, such as fd00:1::/64'],
    ['ipv6Address', '10.0.1.1', '"10.0.1.1" is not an IPv6 address; use RFC 4291 notation without a zone, such as fd00:1::11'],
    ['ipv6Address', 'fe80::1', '"fe80::1" is a link-local address (fe80::/10), which is only valid on one link; use a unicast IPv6 address'],
  ])('GIVEN balancer %s %j WHEN checked THEN %s', (field, value, message) => {
    expect(problems(variant6((s) => (s[field] = value)))).toEqual([`s/lb1: ${field}: ${message}`]);
  });

  test.each(['tcp', 'http'])(
    'GIVEN a %s health check on an IPv6 VIP or one of its backends WHEN checked THEN it is valid: probes go through the VIP over IPv6 too',
    (kind) => {
      expect(problems(variant6((s) => (vip0(s).healthCheck = { kind })))).toEqual([]);
      expect(problems(variant6((s) => (be0(s).healthCheck = { kind })))).toEqual([]);
    },
  );

  test("GIVEN an IPv6 VIP whose backend opts out with kind 'none' WHEN checked THEN it is valid", () => {
    expect(problems(variant6((s) => (be0(s).healthCheck = { kind: 'none' })))).toEqual([]);
  });

  test("GIVEN an IPv6 VIP equal to the balancer's ipv6Address WHEN checked THEN it is refused", () => {
    expect(problems(variant6((s) => (s.ipv6Address = 'fd00:1::100')))).toEqual([
      `s/web: ip: "fd00:1::100" is the balancer's own address; a VIP needs an address of its own`,
    ]);
  });
});

describe('ports, protocols, modes, algorithms', () => {
  test.each([0, 65536, -1, 80.5, '80', 'all', null])('GIVEN VIP port %j WHEN checked THEN it is refused with what is allowed', (port) => {
    const shown = typeof port === 'string' ? `"${port}"` : String(port);
    expect(problems(variant((s) => (vip0(s).port = port)))).toEqual([
      `s/web: port: ${shown} is not allowed; use an integer from 1 to 65535, or '*' for all ports`,
    ]);
  });

  test.each([0, 65536, '*'])('GIVEN backend port %j WHEN checked THEN it is refused', (port) => {
    const shown = typeof port === 'string' ? `"${port}"` : String(port);
    expect(problems(variant((s) => (be0(s).port = port)))).toEqual([`s/web/web1: port: ${shown} is not allowed; use an integer from 1 to 65535`]);
  });

  // every combination but least connections on UDP (refused below: UDP has no end signal)
  test.each(
    PROTOCOLS.flatMap((p) => MODES.flatMap((m) => ALGORITHMS.filter((a) => p === 'tcp' || !a.includes('least-connections')).map((a) => [p, m, a] as const))),
  )('GIVEN protocol %s, mode %s, algorithm %s WHEN checked THEN it is accepted', (protocol, mode, algorithm) => {
    expect(problems(variant((s) => Object.assign(vip0(s), { protocol, mode, algorithm })))).toEqual([]);
  });

  test.each([
    ['protocol', 'sctp', `"sctp" is not a supported protocol; use one of 'tcp', 'udp'`],
    ['protocol', 'TCP', `"TCP" is not a supported protocol; use one of 'tcp', 'udp'`],
    ['mode', 'l4', `"l4" is not a supported mode; use one of 'l2', 'l3'`],
    ['mode', 'nat', `"nat" is not a supported mode; use one of 'l2', 'l3'`],
    [
      'algorithm',
      'random',
      `"random" is not a supported algorithm; use one of 'round-robin', 'weighted-round-robin', 'source-hash', 'consistent-hash', 'least-connections', 'weighted-least-connections'`,
    ],
  ])('GIVEN %s %j WHEN checked THEN it is refused with the allowed set', (field, value, message) => {
    expect(problems(variant((s) => (vip0(s)[field] = value)))).toEqual([`s/web: ${field}: ${message}`]);
  });

  test.each(['least-connections', 'weighted-least-connections'])('GIVEN algorithm %s WHEN checked THEN it is accepted', (algorithm) => {
    expect(problems(variant((s) => (vip0(s).algorithm = algorithm)))).toEqual([]);
  });
});

describe('weights and backends', () => {
  test.each([-1, 1001, 1.5, '2', null, Number.NaN])('GIVEN weight %j WHEN checked THEN it is refused: an integer from 0 to 1000', (weight) => {
    const shown = typeof weight === 'string' ? `"${weight}"` : String(weight);
    expect(problems(variant((s) => (be0(s).weight = weight)))).toEqual([
      `s/web/web1: weight: ${shown} is not allowed; use an integer from 0 to 1000 (0 drains the backend)`,
    ]);
  });

  test.each([0, 1000])('GIVEN weight %j WHEN checked THEN it is accepted', (weight) => {
    expect(problems(variant((s) => (be0(s).weight = weight)))).toEqual([]);
  });

  test('GIVEN a VIP with no backends WHEN checked THEN it is refused', () => {
    expect(problems(variant((s) => (vip0(s).backends = [])))).toEqual([
      's/web: backends: is empty; a VIP needs at least one backend: add one with vip.addBackend(name, { host }) or new Backend(vip, name, { ip })',
    ]);
  });

  test('GIVEN a backend port different from the VIP port WHEN checked THEN DSR cannot translate ports', () => {
    expect(problems(variant((s) => (be0(s).port = 8080)))).toEqual([
      's/web/web1: port: 8080 differs from the VIP port 80; DSR cannot translate ports, so the backend must listen on 80 (leave port unset)',
    ]);
  });

  test('GIVEN a backend port equal to the VIP port WHEN checked THEN it is accepted', () => {
    expect(problems(variant((s) => (be0(s).port = 80)))).toEqual([]);
  });

  test("GIVEN a backend port on a '*' VIP WHEN checked THEN it is refused", () => {
    expect(
      problems(
        variant((s) => {
          vip0(s).port = '*';
          be0(s).port = 80;
        }),
      ),
    ).toEqual(["s/web/web1: port: 80 is set, but the VIP serves all ports ('*'); DSR cannot translate ports, so leave the backend port unset"]);
  });

  test('GIVEN two backends with the same IP WHEN checked THEN the second is refused, naming the first', () => {
    expect(problems(variant((s) => (vip0(s).backends[1].ip = '10.0.1.11')))).toEqual([
      's/web/web2: ip: "10.0.1.11" is used twice in VIP web (also by s/web/web1); each backend needs its own address',
    ]);
  });

  test('GIVEN two backends with the same name WHEN checked THEN the second is refused', () => {
    expect(problems(variant((s) => (vip0(s).backends[1].name = 'web1')))).toEqual([
      's/web/web2: name: "web1" is used twice in VIP web (also by s/web/web1); backend names must be unique in a VIP',
    ]);
  });

  test("GIVEN an L2 backend outside the balancer's subnet WHEN checked THEN it is refused", () => {
    expect(problems(variant((s) => (be0(s).ip = '10.0.2.11')))).toEqual([
      "s/web/web1: ip: \"10.0.2.11\" is outside the balancer's subnet 10.0.1.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)",
    ]);
  });

  test("GIVEN an L3 backend outside the balancer's subnet WHEN checked THEN it is accepted", () => {
    expect(
      problems(
        variant((s) => {
          vip0(s).mode = 'l3';
          be0(s).ip = '10.0.2.11';
        }),
      ),
    ).toEqual([]);
  });

  test('GIVEN a backend ip equal to the VIP WHEN checked THEN it is refused', () => {
    expect(problems(variant((s) => (be0(s).ip = '10.0.1.100')))).toEqual([`s/web/web1: ip: "10.0.1.100" is the VIP itself; use the backend's real address`]);
  });

  test("GIVEN a backend ip equal to the balancer's address WHEN checked THEN it is refused", () => {
    expect(problems(variant((s) => (be0(s).ip = '10.0.1.2')))).toEqual([
      `s/web/web1: ip: "10.0.1.2" is the balancer's own address; use the backend's real address`,
    ]);
  });

  test("GIVEN a VIP equal to the balancer's address WHEN checked THEN it is refused", () => {
    expect(problems(variant((s) => (vip0(s).ip = '10.0.1.2')))).toEqual([
      `s/web: ip: "10.0.1.2" is the balancer's own address; a VIP needs an address of its own`,
    ]);
  });
});

describe('VIP clashes on one balancer', () => {
  const second =
    (port: number | '*', protocol = 'tcp', ip = '10.0.1.100') =>
    (s: Json) =>
      s.vips.push({ path: 's/other', name: 'other', ip, port, protocol, backends: [{ path: 's/other/b', name: 'b', ip: '10.0.1.13' }] });

  test.each([
    ['the same port', 80, '80 clashes with s/web (10.0.1.100 tcp/80)'],
    ["'*' over a single port", '*', '"*" clashes with s/web (10.0.1.100 tcp/80)'],
  ] as const)('GIVEN a second VIP on %s WHEN checked THEN it clashes', (_what, port, start) => {
    expect(problems(variant(second(port)))).toEqual([
      `s/other: port: ${start} on the same balancer; each ip/protocol/port may belong to one VIP, and '*' covers every port`,
    ]);
  });

  test("GIVEN a single-port VIP after a '*' VIP WHEN checked THEN it clashes with the '*' VIP", () => {
    const spec = variant((s) => {
      vip0(s).port = '*';
      second(443)(s);
    });
    expect(problems(spec)).toEqual([
      `s/other: port: 443 clashes with s/web (10.0.1.100 tcp/*) on the same balancer; each ip/protocol/port may belong to one VIP, and '*' covers every port`,
    ]);
  });

  test.each([
    ['another port', second(443)],
    ['another protocol', second(80, 'udp')],
    ["'*' on another protocol", second('*', 'udp')],
    ['another ip', second(80, 'tcp', '10.0.1.101')],
  ])('GIVEN a second VIP on %s WHEN checked THEN there is no clash', (_what, mutate) => {
    expect(problems(variant(mutate))).toEqual([]);
  });

  test('GIVEN two VIPs with the same name WHEN checked THEN the second is refused', () => {
    expect(
      problems(
        variant((s) => {
          second(443)(s);
          s.vips[1].name = 'web';
        }),
      ),
    ).toEqual(['s/other: name: "web" is used by another VIP on the same balancer; VIP names must be unique per balancer']);
  });
});

describe('names, interfaces, MACs, host keys, mssClamp', () => {
  const badName = (v: string) => `"${v}" is not a valid name; use 1 to 32 characters of letters, digits, '_' and '-', starting with a letter or digit`;
  test.each(['web1; rm -rf /', '$(reboot)', '-web', '', 'a'.repeat(33), 'web 1', 'wéb'])(
    'GIVEN VIP name %j WHEN checked THEN it fails the strict pattern',
    (name) => {
      expect(problems(variant((s) => (vip0(s).name = name)))).toEqual([`s/web: name: ${badName(name)}`]);
    },
  );

  const badIf = (v: string) => `"${v}" is not a valid interface name; use 1 to 15 characters of letters, digits, '_', '.' and '-', not starting with '-'`;
  test.each(['eth0-very-long-name', 'abcdefghijklmnop', 'eth0;reboot', 'eth 0', '', '..', 'eth0/1', '-eth0', '-', '--help'])(
    'GIVEN interface %j WHEN checked THEN it is refused',
    (iface) => {
      expect(problems(variant((s) => (s.interface = iface)))).toEqual([`s/lb1: interface: ${badIf(iface)}`]);
    },
  );

  test.each(['abcdefghijklmno', 'vlan.100_dsr-lb', 'eth0'])('GIVEN interface %j (at most 15 characters) WHEN checked THEN it is accepted', (iface) => {
    expect(problems(variant((s) => (s.interface = iface)))).toEqual([]);
  });

  const notMac = (v: string) => `"${v}" is not a MAC address; use six lower-case hex pairs separated by ':', such as 52:54:00:12:34:56`;
  test.each([
    ['zz', notMac('zz')],
    ['02:00:00:00:00', notMac('02:00:00:00:00')],
    ['02:00:00:00:00:00:01', notMac('02:00:00:00:00:00:01')],
    ['AA:BB:CC:DD:EE:FF', notMac('AA:BB:CC:DD:EE:FF')],
    ['02-00-00-00-00-01', notMac('02-00-00-00-00-01')],
    ['00:00:00:00:00:00', `"00:00:00:00:00:00" is the all-zero MAC address; use the backend's unicast MAC`],
    ['01:00:5e:00:00:01', '"01:00:5e:00:00:01" is a multicast MAC address; use a unicast MAC'],
  ])('GIVEN backend mac %j WHEN checked THEN it is refused', (mac, message) => {
    expect(problems(variant((s) => (be0(s).mac = mac)))).toEqual([`s/web/web1: mac: ${message}`]);
  });

  test('GIVEN a malformed balancer mac WHEN checked THEN it is refused', () => {
    expect(problems(variant((s) => (s.mac = '02:00:00:00:00')))).toEqual([`s/lb1: mac: ${notMac('02:00:00:00:00')}`]);
  });

  test('GIVEN a mac on a backend of an L3 VIP WHEN checked THEN it is refused', () => {
    expect(
      problems(
        variant((s) => {
          vip0(s).mode = 'l3';
          be0(s).mac = '02:00:00:00:00:0b';
        }),
      ),
    ).toEqual([
      's/web/web1: mac: "02:00:00:00:00:0b" is set on a backend of an L3 VIP, but mac only applies to L2 VIPs; an L3 VIP reaches the backend by IPIP to its address, so remove mac',
    ]);
  });

  test('GIVEN no host key and no known_hosts file WHEN checked THEN it fails closed', () => {
    expect(problems(variant((s) => delete s.ssh.hostKey))).toEqual([
      "s/lb1: ssh.hostKey: is missing: host keys are always verified, so set exactly one of ssh.hostKey ('SHA256:…' from `ssh-keygen -lf`, or an OpenSSH public key line) or ssh.knownHostsFile",
    ]);
  });

  test('GIVEN both a host key and a known_hosts file WHEN checked THEN it is refused', () => {
    expect(problems(variant((s) => (s.ssh.knownHostsFile = '/etc/ssh/ssh_known_hosts')))).toEqual([
      's/lb1: ssh.hostKey: and ssh.knownHostsFile are both set; set exactly one of them',
    ]);
  });

  const badKey = (v: string) =>
    `"${v}" is not a host key; use a pinned fingerprint 'SHA256:<43 base64 characters>' (ssh-keygen -lf) or an OpenSSH public key line 'ssh-ed25519 AAAA…'`;
  test.each(['SHA256:short', 'MD5:aa:bb', `SHA256:${'A'.repeat(42)}`, 'ssh-ed25519', 'ssh-dss AAAAB3NzaC1kc3M=', ''])(
    'GIVEN host key %j WHEN checked THEN it is refused',
    (key) => {
      expect(problems(variant((s) => (s.ssh.hostKey = key)))).toEqual([`s/lb1: ssh.hostKey: ${badKey(key)}`]);
    },
  );

  test.each([HOST_KEY, 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU1ebz9/cu7/QEXn9OIeZJ root@lb1'])(
    'GIVEN host key %j WHEN checked THEN it is accepted',
    (key) => {
      expect(problems(variant((s) => (s.ssh.hostKey = key)))).toEqual([]);
    },
  );

  test.each([535, 1461, 1440.5, 0])('GIVEN mssClamp %j on an L3 VIP WHEN checked THEN it is refused: 536 to 1460', (mss) => {
    expect(
      problems(
        variant((s) => {
          vip0(s).mode = 'l3';
          vip0(s).mssClamp = mss;
        }),
      ),
    ).toEqual([`s/web: mssClamp: ${mss} is not allowed; use an integer from 536 to 1460 (bytes)`]);
  });

  test.each([536, 1460])('GIVEN mssClamp %j on an L3 VIP WHEN checked THEN it is accepted', (mss) => {
    expect(
      problems(
        variant((s) => {
          vip0(s).mode = 'l3';
          vip0(s).mssClamp = mss;
        }),
      ),
    ).toEqual([]);
  });

  test.each(['least-connections', 'weighted-least-connections'] as const)('GIVEN %s on a UDP VIP WHEN checked THEN it is refused', (algorithm) => {
    expect(
      problems(
        variant((s) => {
          vip0(s).protocol = 'udp';
          vip0(s).algorithm = algorithm;
        }),
      ),
    ).toEqual([
      `s/web: algorithm: "${algorithm}" is set on a UDP VIP, but least connections counts a connection's end from the client's FIN or RST, which UDP does not have; use 'round-robin', 'weighted-round-robin' or 'consistent-hash'`,
    ]);
  });

  test('GIVEN mssClamp on an L2 VIP WHEN checked THEN it is refused', () => {
    expect(problems(variant((s) => (vip0(s).mssClamp = 1400)))).toEqual([
      "s/web: mssClamp: 1400 is set on an L2 VIP, but mssClamp only applies to L3 (IPIP) VIPs, whose request path loses 20 bytes to encapsulation; remove it or use mode 'l3'",
    ]);
  });
});

describe('unknown properties (objects are strict)', () => {
  const vipKeys = 'name, ip, port, protocol, mode, algorithm, flowTimeoutSec, mssClamp, hashTableSize, healthCheck, backends';
  const l7 =
    '. DSR VIPs are Layer 4 only: the balancer never sees replies or HTTP content, so put cookies, headers and paths on an L7 VIP (a reverse proxy) instead';
  test.each(['cookie', 'stickyCookie', 'headers', 'requestHeader', 'urlPath', 'pathPrefix', 'tlsCertificate', 'httpRedirect'])(
    'GIVEN an L7-looking key %j on a VIP WHEN checked THEN the message points to an L7 VIP',
    (key) => {
      expect(problems(variant((s) => (vip0(s)[key] = 'x')))).toEqual([`s/web: ${key}: "${key}" is not a known property; known properties are ${vipKeys}${l7}`]);
    },
  );

  test.each(['weigth', 'timeout', 'healthcheck'])(
    'GIVEN a misspelt or unknown key %j WHEN checked THEN the known keys are listed, without the L7 hint',
    (key) => {
      expect(problems(variant((s) => (vip0(s)[key] = 1)))).toEqual([`s/web: ${key}: "${key}" is not a known property; known properties are ${vipKeys}`]);
    },
  );

  test('GIVEN unknown keys on a backend and in ssh WHEN checked THEN each is reported at its own object', () => {
    expect(
      problems(
        variant((s) => {
          be0(s).cookie = 'x';
          s.ssh.password = 'hunter2';
        }),
      ),
    ).toEqual([
      's/lb1: ssh.password: "password" is not a known property; known properties are host, port, user, privateKeyPath, hostKey, knownHostsFile',
      `s/web/web1: cookie: "cookie" is not a known property; known properties are name, ip, port, weight, mac, healthCheck${l7}`,
    ]);
  });
});

describe('unknown properties as the agent parses a host spec (either kind)', () => {
  /** The agent's own message for a host spec text. */
  const agentProblems = (spec: Json): string[] => {
    try {
      parseHostSpec(JSON.stringify(spec));
      return [];
    } catch (error) {
      return (error as SpecError).issues.map(formatIssue);
    }
  };

  test('GIVEN unknown keys at every level of a balancer spec WHEN the agent parses it THEN each message lists the known keys of its own object', () => {
    const spec = variant((s) => {
      s.bogus = 1;
      s.ssh.password = 'x';
      vip0(s).weigth = 2;
      be0(s).wieght = 3;
    });
    expect(agentProblems(spec)).toEqual([
      's/lb1: ssh.password: "password" is not a known property; known properties are host, port, user, privateKeyPath, hostKey, knownHostsFile',
      's/web/web1: wieght: "wieght" is not a known property; known properties are name, ip, port, weight, mac, healthCheck',
      's/web: weigth: "weigth" is not a known property; known properties are name, ip, port, protocol, mode, algorithm, flowTimeoutSec, mssClamp, hashTableSize, healthCheck, backends',
      's/lb1: bogus: "bogus" is not a known property; known properties are name, ssh, interface, address, ipv6Address, subnet, ipv6Subnet, mac, statsTextfile, statsIntervalSec, pair, vips',
    ]);
  });

  test('GIVEN unknown keys in a backend host spec WHEN the agent parses it THEN the backend host keys are listed, not the balancer ones', () => {
    const spec = {
      kind: 'backend',
      path: 's/web1',
      name: 'web1',
      ssh: { host: '10.0.1.11', hostKey: HOST_KEY },
      services: [{ path: 's/web', ip: '10.0.1.100', port: 80, protocol: 'tcp', mode: 'l2', extra: 1 }],
      persistt: true,
    };
    expect(agentProblems(spec)).toEqual([
      's/web: extra: "extra" is not a known property; known properties are ip, port, protocol, mode, mssClamp',
      's/web1: persistt: "persistt" is not a known property; known properties are name, ssh, address, ipv6Address, persist, services',
    ]);
  });
});

describe('all problems at once', () => {
  test('GIVEN several mistakes across balancer, VIPs and backends WHEN checked THEN every one is reported, each at its object', () => {
    const spec = variant((s) => {
      s.interface = 'eth0-very-long-name';
      vip0(s).algorithm = 'random';
      be0(s).weight = 1.5;
      vip0(s).backends[1].mac = 'zz';
    });
    expect(problems(spec)).toEqual([
      `s/lb1: interface: ${"\"eth0-very-long-name\" is not a valid interface name; use 1 to 15 characters of letters, digits, '_', '.' and '-', not starting with '-'"}`,
      `s/web: algorithm: "random" is not a supported algorithm; use one of 'round-robin', 'weighted-round-robin', 'source-hash', 'consistent-hash', 'least-connections', 'weighted-least-connections'`,
      's/web/web1: weight: 1.5 is not allowed; use an integer from 0 to 1000 (0 drains the backend)',
      `s/web/web2: mac: "zz" is not a MAC address; use six lower-case hex pairs separated by ':', such as 52:54:00:12:34:56`,
    ]);
  });

  test('GIVEN several cross-object mistakes WHEN checked THEN every one is reported in one pass', () => {
    const spec = variant((s) => {
      be0(s).ip = '10.0.2.11';
      vip0(s).backends[1].port = 8080;
      vip0(s).mssClamp = 1400;
      s.vips.push({ path: 's/dup', name: 'dup', ip: '10.0.1.2', port: '*', backends: [] });
    });
    expect(problems(spec)).toEqual([
      "s/web: mssClamp: 1400 is set on an L2 VIP, but mssClamp only applies to L3 (IPIP) VIPs, whose request path loses 20 bytes to encapsulation; remove it or use mode 'l3'",
      "s/web/web1: ip: \"10.0.2.11\" is outside the balancer's subnet 10.0.1.0/24; an L2 backend must share the balancer's segment (use mode 'l3' for other subnets)",
      's/web/web2: port: 8080 differs from the VIP port 80; DSR cannot translate ports, so the backend must listen on 80 (leave port unset)',
      's/dup: backends: is empty; a VIP needs at least one backend: add one with vip.addBackend(name, { host }) or new Backend(vip, name, { ip })',
      `s/dup: ip: "10.0.1.2" is the balancer's own address; a VIP needs an address of its own`,
    ]);
  });

  test('GIVEN unknown keys and an HTTP check WHEN the agent parses the spec THEN known keys are listed and each problem sits at its object', () => {
    const spec = variant((s) => {
      s.bogus = 1;
      vip0(s).healthCheck = { kind: 'tcp', path: '/healthz' };
      be0(s).extra = true;
    });
    let error: unknown;
    try {
      parseHostSpec(JSON.stringify(spec));
    } catch (e) {
      error = e;
    }
    expect((error as SpecError).issues.map(formatIssue)).toEqual([
      `s/web: healthCheck.path: "/healthz" is set on a 'tcp' check, but path only applies to 'http' checks; remove it or use kind 'http'`,
      's/web/web1: extra: "extra" is not a known property; known properties are name, ip, port, weight, mac, healthCheck',
      's/lb1: bogus: "bogus" is not a known property; known properties are name, ssh, interface, address, ipv6Address, subnet, ipv6Subnet, mac, statsTextfile, statsIntervalSec, pair, vips',
    ]);
  });

  test('GIVEN a pair path with a line break WHEN the agent parses the spec THEN it is refused (it heads keepalived.conf)', () => {
    const pair = primarySide('10.0.1.3', HOST_KEY);
    const spec = variant((s) => {
      s.pair = { ...pair, path: 's/edge\nvrrp_script x {' };
    });
    let error: unknown;
    try {
      parseHostSpec(JSON.stringify(spec));
    } catch (e) {
      error = e;
    }
    expect((error as SpecError).issues.map(formatIssue)).toEqual([
      's/lb1: pair.path: "s/edge\\nvrrp_script x {" is not a usable construct path; it is written into comments of config files and nft rulesets, so use a single line of printable characters (no control character such as a line break)',
    ]);
    // the same pair with a usable path passes
    expect(parseHostSpec(JSON.stringify(variant((s) => void (s.pair = { ...pair, path: 's/edge' }))))).toMatchObject({ pair: { path: 's/edge' } });
  });

  test('GIVEN mistakes WHEN the agent parses the spec THEN one SpecError lists them all, with a count', () => {
    const spec = variant((s) => {
      s.interface = 'a;b';
      be0(s).weight = -1;
    });
    let error: unknown;
    try {
      parseHostSpec(JSON.stringify(spec));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(SpecError);
    expect((error as SpecError).message).toBe(
      [
        'tula-dsr found 2 problems in the configuration:',
        `  - s/lb1: interface: "a;b" is not a valid interface name; use 1 to 15 characters of letters, digits, '_', '.' and '-', not starting with '-'`,
        '  - s/web/web1: weight: -1 is not allowed; use an integer from 0 to 1000 (0 drains the backend)',
      ].join('\n'),
    );
    expect((error as SpecError).issues.map((i) => [i.path, i.field, i.value])).toEqual([
      ['s/lb1', 'interface', 'a;b'],
      ['s/web/web1', 'weight', -1],
    ]);
  });
});

describe('backend host specs', () => {
  const host = (over: Json = {}): Json => ({
    kind: 'backend',
    path: 's/web3',
    name: 'web3',
    ssh: { host: 'web3.example.net', hostKey: HOST_KEY },
    services: [{ path: 's/far', ip: '10.0.2.100', port: 443, protocol: 'tcp', mode: 'l3', mssClamp: 1440 }],
    ...over,
  });
  const hostProblems = (input: unknown) => {
    const r = checkSpec(StrictSpecSchemas.BackendHostSpecSchema, input, '(spec)', (v) => checkBackendHostSpec(v));
    return r.ok ? [] : r.issues.map(formatIssue);
  };

  test('GIVEN an L3 host reached by DNS name without an address WHEN checked THEN address is required', () => {
    expect(hostProblems(host())).toEqual([
      's/web3: address: is required when the host serves L3 VIPs and ssh.host ("web3.example.net") is not an IPv4 address: it is the local end of ipip0',
    ]);
    expect(hostProblems(host({ address: '10.0.2.13' }))).toEqual([]);
  });

  test.each([
    ['persist', 'yes', 's/web3: persist: "yes" is not allowed; use true or false'],
    [
      'name',
      'web3; rm -rf /',
      `s/web3: name: "web3; rm -rf /" is not a valid name; use 1 to 32 characters of letters, digits, '_' and '-', starting with a letter or digit`,
    ],
    ['address', '10.0.2', 's/web3: address: "10.0.2" is not an IPv4 address; use dotted-quad notation such as 10.0.1.100'],
  ])('GIVEN host %s %j WHEN checked THEN it is refused', (field, value, line) => {
    expect(hostProblems(host({ address: '10.0.2.13', [field]: value }))).toEqual([line]);
  });
});

describe('the agent-side (strict) schemas and Terraform tokens', () => {
  test.each(['${TfToken[TOKEN.12]}', '${aws_instance.web.private_ip}'])(
    'GIVEN an unresolved value %j as a backend ip WHEN the agent checks it THEN it is refused',
    (token) => {
      expect(problems(variant((s) => (be0(s).ip = token)))).toEqual([
        `s/web/web1: ip: "${token}" is not an IP address; use an IPv4 address such as 10.0.1.100 or an IPv6 address such as fd00:1::100`,
      ]);
    },
  );
});
