import { RuntimeState, groupPools, parseRuntimeState, poolName, runtimePolicy } from '../../model';
import { balancerSpec } from '../support/render-fixtures';

const backend = (name: string, ip: string, weight: number) => ({ name, ip, weight });
const spec = balancerSpec([
  {
    name: 'web',
    ip: '10.0.1.100',
    port: 80,
    algorithm: 'round-robin',
    healthCheck: { kind: 'tcp' },
    backends: [backend('a', '10.0.1.11', 1), backend('b', '10.0.1.12', 1), backend('c', '10.0.1.13', 0)],
  },
]);
const pool = groupPools(spec.vips)[0];

function state(down: string[], failOpen: boolean): RuntimeState {
  return {
    version: 1,
    config: 'x',
    pid: 1,
    startedAt: 0,
    updatedAt: 0,
    checks: [],
    pools: [{ id: poolName(pool.id), vips: ['web'], down, failOpen, changedAt: 0 }],
  };
}

const takers = (s: RuntimeState | null) => pool.backends.filter((b) => runtimePolicy(s).takes(b, pool)).map((b) => b.name);

describe('the runtime view an apply renders with', () => {
  test('GIVEN a checked VIP THEN its pool is managed (the runtime rewrites it)', () => {
    expect(pool.managed).toBe(true);
  });

  test.each([
    ['no state file', null, ['a', 'b']],
    ['b down', state(['10.0.1.12'], false), ['a']],
    ['every backend with a weight down: fail open', state(['10.0.1.11', '10.0.1.12'], true), ['a', 'b']],
    ['the drained backend listed down too', state(['10.0.1.13'], false), ['a', 'b']],
  ] as const)('GIVEN %s THEN only the expected backends take new flows, and the drained one never does', (_what, s, expected) => {
    expect(takers(s)).toEqual(expected);
  });

  test('GIVEN a state file this version cannot read THEN it is ignored (null), not trusted', () => {
    expect(parseRuntimeState('{"version": 2}')).toBeNull();
    expect(parseRuntimeState('not json')).toBeNull();
    expect(parseRuntimeState(JSON.stringify(state([], false)))).toEqual(state([], false));
  });
});
