import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  extractJson,
  parseAddressLines,
  parseDirLines,
  parseFiles,
  parseIpAddrJson,
  parseModuleLines,
  parseNeighJson,
  parseNftTableText,
  parseSysctlLines,
} from '../../agent/facts/parsers';
import { parseSections } from '../../model/sections';
import { parseApplyOutput } from '../../agent/script';
import { renderDiff } from '../../model/text-diff';

// Recorded from a real namespace (nft 1.0.6, iproute2 6.1) after tula-dsr applied a one-VIP L2 balancer.
const fixture = (name: string) => readFileSync(join(__dirname, 'fixtures', name), 'utf8');
const JUNK = 'Last login: Sun Nov 29 01:00:00 2026\nwarning: stmt ops map have no json callback\n';

describe('parseIpAddrJson', () => {
  test('GIVEN a recorded `ip -j -d addr` WHEN parsed THEN it lists IPv4 and IPv6 addresses per device, MACs and link state', () => {
    const facts = parseIpAddrJson(fixture('ip-addr.json'));
    expect(facts.addresses).toEqual([
      { dev: 'lo', ip: '127.0.0.1', prefix: 8 },
      { dev: 'lo', ip: '::1', prefix: 128 },
      { dev: 'eth0', ip: '10.213.99.2', prefix: 24 },
      { dev: 'eth0', ip: '10.213.99.100', prefix: 32 },
      { dev: 'eth0', ip: 'fe80::58e6:21ff:fede:c8c3', prefix: 64 },
    ]);
    expect(facts.links.eth0).toMatchObject({ up: true, kind: 'veth' });
    expect(facts.links.eth0.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
    expect(facts.links.lo.mac).toBe('00:00:00:00:00:00');
  });

  test('GIVEN junk lines around the JSON WHEN parsed THEN the result is the same', () => {
    expect(parseIpAddrJson(JUNK + fixture('ip-addr.json') + '\nbye\n')).toEqual(parseIpAddrJson(fixture('ip-addr.json')));
  });

  test('GIVEN an ipip tunnel entry WHEN parsed THEN its endpoints are read from linkinfo', () => {
    const text = JSON.stringify([
      {
        ifname: 'ipip0',
        flags: ['NOARP', 'UP'],
        address: '10.0.2.11',
        linkinfo: { info_kind: 'ipip', info_data: { local: '10.0.2.11', remote: 'any' } },
        addr_info: [{ family: 'inet', local: '10.0.9.100', prefixlen: 32 }],
      },
    ]);
    const facts = parseIpAddrJson(text);
    expect(facts.links.ipip0).toEqual({ mac: undefined, up: true, kind: 'ipip', local: '10.0.2.11', remote: 'any' });
    expect(facts.addresses).toEqual([{ dev: 'ipip0', ip: '10.0.9.100', prefix: 32 }]);
  });

  test('GIVEN no JSON at all WHEN parsed THEN it is empty rather than throwing', () => {
    expect(parseIpAddrJson('ip: command not found\n')).toEqual({ addresses: [], links: {} });
  });

  // recorded in the VM lab (Debian 6.1, iproute2 6.1): `ip -d -j link show dsr6tnl0` after
  // `ip link add dsr6tnl0 type ip6tnl local fd10:10:3::2 remote any mode ip6ip6 encaplimit none`
  const DSR6TNL0 = {
    ifindex: 7,
    link: null,
    ifname: 'dsr6tnl0',
    flags: ['NOARP', 'UP', 'LOWER_UP'],
    mtu: 1460,
    link_type: 'tunnel6',
    address: 'fd10:10:3::2',
    broadcast: '::',
    linkinfo: {
      info_kind: 'ip6tnl',
      info_data: { proto: 'ip6ip6', remote: 'any', local: 'fd10:10:3::2', ttl: 64, ip6_tnl_f_ign_encap_limit: true, tclass: '0x00', flowlabel: '0x00000' },
    },
  };

  test('GIVEN an ip6tnl device WHEN parsed THEN its endpoints, its mode and whether it sends the encapsulation limit option are read', () => {
    expect(parseIpAddrJson(JSON.stringify([DSR6TNL0])).links.dsr6tnl0).toEqual({
      mac: undefined,
      up: true,
      kind: 'ip6tnl',
      local: 'fd10:10:3::2',
      remote: 'any',
      proto: 'ip6ip6',
      noEncapLimit: true,
    });
  });

  test('GIVEN an ip6tnl device with an encapsulation limit and endpoints in long form WHEN parsed THEN the endpoints are canonical and noEncapLimit is false', () => {
    const data = { proto: 'any', remote: 'fd10:0010:0002:0000:0000:0000:0000:0002', local: 'FD10:10:3::2', encap_limit: 4 };
    expect(parseIpAddrJson(JSON.stringify([{ ...DSR6TNL0, linkinfo: { info_kind: 'ip6tnl', info_data: data } }])).links.dsr6tnl0).toMatchObject({
      local: 'fd10:10:3::2',
      remote: 'fd10:10:2::2',
      proto: 'any',
      noEncapLimit: false,
    });
  });
});

describe('parseModuleLines', () => {
  test("GIVEN the facts script's module lines among junk WHEN parsed THEN each module has its state, and unknown states are left out", () => {
    expect(parseModuleLines(`${JUNK}ipip missing\nip6_tunnel loaded\nfoo maybe\n`)).toEqual({ ipip: 'missing', ip6_tunnel: 'loaded' });
  });
});

describe('parseAddressLines', () => {
  test("GIVEN the facts' address lines among junk WHEN parsed THEN each is a device, an address in RFC 5952 form and a prefix", () => {
    const text = `${JUNK}lo 127.0.0.1/8\nlo FD00:1:0:0::0064/128\neth0 10.213.99.2/24\nbye\neth0 fe80::58e6:21ff:fede:c8c3/64\neth0 fd00:1::100/128 deprecated\n`;

    expect(parseAddressLines(text)).toEqual([
      { dev: 'lo', ip: '127.0.0.1', prefix: 8 },
      { dev: 'lo', ip: 'fd00:1::64', prefix: 128 },
      { dev: 'eth0', ip: '10.213.99.2', prefix: 24 },
      { dev: 'eth0', ip: 'fe80::58e6:21ff:fede:c8c3', prefix: 64 },
      // the balancer's IPv6 VIPs are deprecated on purpose: a re-apply must see that they are
      { dev: 'eth0', ip: 'fd00:1::100', prefix: 128, deprecated: true },
    ]);
  });
});

describe('parseNftTableText', () => {
  test('GIVEN a recorded terse table listing with nft warnings WHEN parsed THEN it names every object and the hook', () => {
    const facts = parseNftTableText(JUNK + fixture('nft-table.txt'));
    expect(facts.exists).toBe(true);
    expect(facts.counters).toEqual(['be_0ad56301', 'vip_web']);
    expect(facts.maps).toEqual(expect.arrayContaining(['backend_counter_l2', 'flows_l2_tcp', 'slots_l2_port', 'vip_port', 'vip_counter_port']));
    expect(facts.chains).toEqual(expect.arrayContaining(['ingress', 'l2_out', 'l2_tcp_port_rr2_t300']));
    expect(facts.hooks).toEqual({ ingress: 'type filter hook ingress device "eth0" priority -300; policy accept;' });
  });

  test('GIVEN an error message (no such table) WHEN parsed THEN the table does not exist', () => {
    expect(parseNftTableText('Error: No such file or directory\nlist table netdev tula_dsr\n').exists).toBe(false);
  });
});

describe('IPv6 in the facts', () => {
  test('GIVEN IPv6 addresses and neighbours written in long form WHEN parsed THEN they are in RFC 5952 form, the form the spec side compares', () => {
    const addr = JSON.stringify([{ ifname: 'lo', flags: ['UP'], addr_info: [{ family: 'inet6', local: 'FD00:1:0:0::0064', prefixlen: 128 }] }]);
    expect(parseIpAddrJson(addr).addresses).toEqual([{ dev: 'lo', ip: 'fd00:1::64', prefix: 128 }]);
    const neigh = JSON.stringify([{ dst: 'fd00:1:0::000b', dev: 'eth0', lladdr: '02:AA:00:00:00:0B', state: ['REACHABLE'] }]);
    expect(parseNeighJson(neigh)).toEqual({ 'fd00:1::b': '02:aa:00:00:00:0b' });
  });
});

describe('parseNeighJson', () => {
  test('GIVEN recorded neighbours WHEN parsed THEN usable entries map IP to MAC', () => {
    const neigh = parseNeighJson(fixture('neigh.json'));
    expect(Object.keys(neigh)).toEqual(['10.213.99.1']);
    expect(neigh['10.213.99.1']).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
  });

  test('GIVEN FAILED and INCOMPLETE entries WHEN parsed THEN they are left out', () => {
    const text = JSON.stringify([
      { dst: '10.0.0.1', dev: 'eth0', state: ['FAILED'] },
      { dst: '10.0.0.2', dev: 'eth0', lladdr: '02:00:00:00:00:02', state: ['INCOMPLETE'] },
      { dst: '10.0.0.3', dev: 'eth0', lladdr: '02:00:00:00:00:03', state: ['STALE'] },
    ]);
    expect(parseNeighJson(text)).toEqual({ '10.0.0.3': '02:00:00:00:00:03' });
  });
});

describe('small parsers', () => {
  test('sysctl lines: values, missing keys (`key!`) and junk', () => {
    expect(parseSysctlLines('junk\nnet.ipv4.conf.all.arp_ignore=1\nnet.ipv4.conf.ipip0.rp_filter!\nnet.ipv4.conf.all.rp_filter= 2 \n')).toEqual({
      'net.ipv4.conf.all.arp_ignore': '1',
      'net.ipv4.conf.ipip0.rp_filter': null,
      'net.ipv4.conf.all.rp_filter': '2',
    });
  });

  test('files: content lines carry a `|` prefix so no content line can pass for a marker', () => {
    const hash = 'a'.repeat(64);
    const text = `@@file ${hash} /etc/x.conf\n|line one\n|@@file ${'b'.repeat(64)} /fake\n|\n\n@@file ${'c'.repeat(64)} /etc/y\n|y\n`;
    expect(parseFiles(text)).toEqual({
      '/etc/x.conf': { path: '/etc/x.conf', sha256: hash, content: `line one\n@@file ${'b'.repeat(64)} /fake\n\n` },
      '/etc/y': { path: '/etc/y', sha256: 'c'.repeat(64), content: 'y\n' },
    });
  });

  test('dirs: yes/no lines', () => {
    expect(parseDirLines('yes /etc/tula-dsr\nno /var/lib/tula-dsr\ngarbage\n')).toEqual({ '/etc/tula-dsr': true, '/var/lib/tula-dsr': false });
  });

  test('sections: junk before the first marker is ignored', () => {
    const sections = parseSections('motd\n@@tula basics\nnow=1\n@@tula end\n');
    expect([...sections.entries()]).toEqual([
      ['basics', 'now=1'],
      ['end', ''],
    ]);
  });

  test('extractJson finds a JSON value after junk and returns undefined when there is none', () => {
    expect(extractJson('warn\n{"a":1}\n')).toEqual({ a: 1 });
    expect(extractJson('nothing here')).toBeUndefined();
  });

  test('apply output: completed steps, a failure with its stderr, and the end marker', () => {
    const out = parseApplyOutput('@@tula done 1\n@@tula done 2\n@@tula failed 3 2\n|Error: Could not process rule\n|  line 4\n\n');
    expect(out).toMatchObject({
      completedSteps: 2,
      failure: { step: 3, exitCode: 2, stderr: 'Error: Could not process rule\n  line 4' },
      finished: false,
      staleFacts: false,
    });
    expect(parseApplyOutput('@@tula stale-facts\n').staleFacts).toBe(true);
    expect(parseApplyOutput('@@tula done 1\n@@tula end\n')).toMatchObject({ completedSteps: 1, finished: true });
  });
});

describe('renderDiff (check and --diff)', () => {
  test('GIVEN a changed line WHEN diffed THEN removals come before additions, as diff -u prints them, with context', () => {
    expect(renderDiff('a\nb\nc\nd\n', 'a\nB\nc\nd\n', '/etc/x')).toBe(
      ['--- /etc/x (host)', '+++ /etc/x (desired)', ' a', '-b', '+B', ' c', ' d', ''].join('\n'),
    );
    expect(renderDiff('same\n', 'same\n', '/etc/x')).toBe('');
  });

  test('GIVEN one line changed in a file of 10,000 WHEN diffed THEN it is the exact diff with its context, as in a small file', () => {
    const lines = (changed: number) => Array.from({ length: 10000 }, (_, i) => (i === changed ? 'ip addr replace 10.0.0.1/32 dev lo' : `line ${i}`));
    const before = `${lines(-1).join('\n')}\n`;
    const after = `${lines(5000).join('\n')}\n`;

    expect(renderDiff(before, after, '/etc/x')).toBe(
      [
        '--- /etc/x (host)',
        '+++ /etc/x (desired)',
        ' line 4998',
        ' line 4999',
        '-line 5000',
        '+ip addr replace 10.0.0.1/32 dev lo',
        ' line 5001',
        ' line 5002',
        '',
      ].join('\n'),
    );
  });

  test('GIVEN two large texts that differ throughout WHEN diffed THEN the lines that went come before those that came, without context', () => {
    const before = Array.from({ length: 3000 }, (_, i) => `a${i}`).join('\n');
    const after = Array.from({ length: 3000 }, (_, i) => (i === 0 ? 'a0' : `b${i}`)).join('\n');

    const diff = renderDiff(before, after, '/etc/x').split('\n');

    expect(diff.slice(0, 4)).toEqual(['--- /etc/x (host)', '+++ /etc/x (desired)', '-a1', '-a2']);
    expect(diff.filter((l) => l.startsWith('-'))).toHaveLength(2999 + 1);
    expect(diff).not.toContain(' a0');
  });
});
