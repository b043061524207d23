import { parseBashTimes, runCounted } from '../../bench/cpu';

describe('CPU accounting of benchmark processes', () => {
  test('GIVEN bash `times` output WHEN parsed THEN the children line gives user and system milliseconds', () => {
    expect(parseBashTimes('0m0.004s 0m0.001s\n1m2.345s 0m0.067s\n')).toEqual({ userMs: 62345, systemMs: 67 });
  });

  test('GIVEN text that is not `times` output WHEN parsed THEN the error quotes it', () => {
    expect(() => parseBashTimes('oops')).toThrow('cannot read bash times from "oops"');
  });

  test('GIVEN a command that burns CPU and one that sleeps WHEN run counted THEN only the busy one shows CPU, and output and exit code pass through', async () => {
    const busy = await runCounted([
      'node',
      '-e',
      'const u=()=>{const c=process.cpuUsage();return (c.user+c.system)/1000};while(u()<300);console.log("done");process.exit(3)',
    ]);
    const idle = await runCounted(['sleep', '0.3']);
    expect(busy.out).toBe('done\n');
    expect(busy.code).toBe(3);
    expect(busy.cpu.userMs + busy.cpu.systemMs).toBeGreaterThanOrEqual(300);
    expect(idle.code).toBe(0);
    expect(idle.cpu.userMs + idle.cpu.systemMs).toBeLessThan(50);
  });
});
