/**
 * The boot scripts quote every value through the one quoting function (model/shell.ts), so the patterns that
 * validation enforces are not what keeps them safe. Each script runs under a real `sh` with stand-ins for the
 * tools it calls, which record the argv they receive, using values validation would refuse.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BackendHostSpec, BalancerSpec, renderBackendBootScript, renderBalancerBootScript } from '../../model';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'tula-boot-'));
  // `ip link show` fails (no such tunnel yet) so that the script goes on to create it; every call logs its argv.
  for (const tool of ['ip', 'sysctl', 'modprobe', 'nft']) {
    const stub = path.join(dir, tool);
    writeFileSync(
      stub,
      `#!/bin/sh\nprintf '${tool}' >> "$LOG"; for a in "$@"; do printf ' [%s]' "$a" >> "$LOG"; done; echo >> "$LOG"\n` +
        // `ip -batch -` reads its commands from stdin: each line is logged as ip receives it
        `[ "$1" != -batch ] || while IFS= read -r l; do printf '< %s\\n' "$l" >> "$LOG"; done\n[ "$1 $2" != 'link show' ]\n`,
    );
    chmodSync(stub, 0o755);
  }
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs a boot script under sh with the stand-in tools first on PATH; returns the logged calls. */
function runScript(script: string): string[] {
  const file = path.join(dir, 'up.sh');
  writeFileSync(file, script);
  execFileSync('sh', [file], { cwd: dir, env: { PATH: `${dir}:/usr/bin:/bin`, LOG: path.join(dir, 'log') } });
  return readFileSync(path.join(dir, 'log'), 'utf8').trim().split('\n');
}

const HOSTILE_DEV = '-x;touch pwned';
const HOSTILE_IP = '$(touch pwned)';
/** `ip -batch` lines are words without blanks, quotes or `#` (addressBatchLine refuses others), but shell syntax. */
const HOSTILE_ADDRESS_DEV = '-x;touch${IFS}pwned`id`';
const HOSTILE_ADDRESS_IP = '$(touch${IFS}pwned)';

test('GIVEN a backend boot script with hostile tunnel, sysctl and address values WHEN sh runs it THEN each tool gets them as single arguments and nothing else runs', () => {
  const spec = { name: 'web1', path: 's/web1' } as BackendHostSpec;
  const script = renderBackendBootScript(spec, {
    sysctls: [{ key: `net.ipv4.conf.${HOSTILE_DEV}.rp_filter`, value: '2 `touch pwned`', device: HOSTILE_DEV }],
    tunnel: { name: HOSTILE_DEV, local: HOSTILE_IP },
    addresses: [
      { ip: HOSTILE_ADDRESS_IP, prefix: 32, dev: HOSTILE_ADDRESS_DEV },
      { ip: '10.0.0.1', prefix: 32, dev: 'lo' },
    ],
    mssClamp: { file: '/etc/x y.nft', ruleset: '', tables: [] },
    tunnel6: null,
    modules: ['ipip;touch pwned'],
  });
  expect(runScript(script)).toEqual([
    'sysctl [-q] [-p] [/etc/sysctl.d/99-tula-dsr.conf]',
    'modprobe [ipip;touch pwned]',
    'ip [link] [show] [-x;touch pwned]',
    'ip [link] [add] [-x;touch pwned] [type] [ipip] [local] [$(touch pwned)] [remote] [any]',
    'ip [link] [set] [-x;touch pwned] [up]',
    'sysctl [-q] [-w] [net.ipv4.conf.-x;touch pwned.rp_filter=2 `touch pwned`]',
    'ip [-batch] [-]',
    '< addr replace $(touch${IFS}pwned)/32 dev -x;touch${IFS}pwned`id`',
    '< addr replace 10.0.0.1/32 dev lo',
    'nft [-f] [/etc/x y.nft]',
  ]);
  expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
});

test('GIVEN a balancer boot script with hostile tunnel and address values WHEN sh runs it THEN each tool gets them as single arguments and nothing else runs', () => {
  const spec = { name: 'lb1', path: 's/lb1' } as BalancerSpec;
  const script = renderBalancerBootScript(
    spec,
    [{ name: HOSTILE_DEV, local: HOSTILE_IP, remote: '10.0.2.1 && touch pwned' }],
    [{ ip: HOSTILE_ADDRESS_IP, prefix: 128, dev: HOSTILE_ADDRESS_DEV, nodad: true, deprecated: true }],
    ['ipip'],
  );
  expect(runScript(script)).toEqual([
    'modprobe [ipip]',
    'ip [link] [show] [-x;touch pwned]',
    'ip [link] [add] [-x;touch pwned] [type] [ipip] [local] [$(touch pwned)] [remote] [10.0.2.1 && touch pwned]',
    'ip [link] [set] [-x;touch pwned] [up]',
    'ip [-batch] [-]',
    '< addr replace $(touch${IFS}pwned)/128 dev -x;touch${IFS}pwned`id` nodad preferred_lft 0',
    'nft [-f] [/etc/tula-dsr/balancer.nft]',
  ]);
  expect(existsSync(path.join(dir, 'pwned'))).toBe(false);
});

test.each([
  ['a blank', { ip: '10.0.0.1', dev: 'eth 0' }, '"eth 0"'],
  ['a new line', { ip: '10.0.0.1', dev: 'lo\naddr del 10.0.0.9/32 dev lo' }, '"lo\\naddr del 10.0.0.9/32 dev lo"'],
  ['a quote', { ip: '10.0.0.1', dev: '"lo' }, '"\\"lo"'],
  ['a comment', { ip: '10.0.0.1#', dev: 'lo' }, '"10.0.0.1#"'],
  ['a backslash', { ip: '10.0.0.1', dev: 'lo\\' }, '"lo\\\\"'],
])('GIVEN an address with %s WHEN a boot script would restore it THEN rendering refuses the value by name', (_, address, shown) => {
  const spec = { name: 'web1', path: 's/web1' } as BackendHostSpec;
  const plan = { sysctls: [], tunnel: null, tunnel6: null, mssClamp: null, modules: [], addresses: [{ ...address, prefix: 32 as const }] };
  expect(() => renderBackendBootScript(spec, plan)).toThrow(`cannot put ${shown} on an ip -batch line`);
});
