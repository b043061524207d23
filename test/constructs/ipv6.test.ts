/**
 * Dual stack through the constructs: an IPv4 and an IPv6 VIP on one Balancer, served by the same BackendHosts, each
 * Backend taking its host's address of its VIP's family; the specs the agent receives, and Terraform's synth.
 */
import 'cdktf/lib/testing/adapters/jest';
import { TerraformStack, Testing } from 'cdktf';
import { BackendHost, Balancer, DsrVip } from '../../constructs';
import { HOST_KEY } from '../support/common';
import { newApp, scratchDir } from '../support/stacks';

const root = scratchDir();

function dualStack() {
  const s = new TerraformStack(newApp(root()), 's');
  const lb = new Balancer(s, 'lb1', {
    ssh: { host: '10.0.1.2', hostKey: HOST_KEY },
    interface: 'eth0',
    subnet: '10.0.1.0/24',
    ipv6Subnet: 'fd00:1::/64',
  });
  // one host reached over IPv6 (its ipv6Address defaults to ssh.host), one over IPv4 with ipv6Address given
  const web1 = new BackendHost(s, 'web1', { ssh: { host: 'fd00:1::11', hostKey: HOST_KEY }, address: '10.0.1.11' });
  const web2 = new BackendHost(s, 'web2', { ssh: { host: '10.0.1.12', hostKey: HOST_KEY }, ipv6Address: 'fd00:1::12' });
  const web4 = new DsrVip(s, 'web4', { balancer: lb, ip: '10.0.1.100', port: 80 });
  const web6 = new DsrVip(s, 'web6', { balancer: lb, ip: 'fd00:1::100', port: 80 });
  for (const vip of [web4, web6]) {
    vip.addBackend('web1', { host: web1 });
    vip.addBackend('web2', { host: web2, weight: 2 });
  }
  return { s, lb, web1, web2 };
}

test('GIVEN an IPv4 and an IPv6 VIP on one balancer over the same hosts WHEN the specs are built THEN each backend has its host address of its VIP family', () => {
  const { lb } = dualStack();
  const spec = lb.toSpec();
  expect(spec.ipv6Subnet).toBe('fd00:1::/64');
  expect(spec.vips.map((v) => [v.name, v.ip, v.backends.map((b) => `${b.name}=${b.ip}`)])).toEqual([
    ['web4', '10.0.1.100', ['web1=10.0.1.11', 'web2=10.0.1.12']],
    ['web6', 'fd00:1::100', ['web1=fd00:1::11', 'web2=fd00:1::12']],
  ]);
});

test('GIVEN the dual-stack hosts WHEN their specs are built THEN each serves both VIPs, with its IPv6 address beside the IPv4 one', () => {
  const { web1, web2 } = dualStack();
  expect(web1.toSpec()).toMatchObject({ address: '10.0.1.11', ipv6Address: 'fd00:1::11' });
  expect(web2.toSpec()).toMatchObject({ address: '10.0.1.12', ipv6Address: 'fd00:1::12' });
  expect(web1.toSpec().services.map((x) => `${x.ip} ${x.port} ${x.mode}`)).toEqual(['10.0.1.100 80 l2', 'fd00:1::100 80 l2']);
});

test('GIVEN the dual-stack stack WHEN synthesized with validations THEN it is valid Terraform JSON with one resource per host', () => {
  const { s } = dualStack();
  const synth = Testing.synth(s, true);
  const resources = JSON.parse(synth).resource;
  const all = Object.values(resources).flatMap((byName) => Object.keys(byName as object));
  expect(all.map((name) => name.replace(/_[0-9A-F]{8}$/, '')).sort()).toEqual(['lb1_host', 'web1_host', 'web2_host']);
});
