import { spawn } from 'node:child_process';
import { childrenReaped, cpuTotal, parseBashTimes, reapedChildrenCpu, runCounted } from '../../bench/cpu';

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

  test('GIVEN a parent that waits for a child burning CPU WHEN read before and after THEN the reaped children CPU grows by what the child used, once it is reaped', async () => {
    // sh waits for its children, as a host's sshd waits for its connections' processes
    const parent = spawn('sh', ['-c', 'read go; node -e "const u=()=>{const c=process.cpuUsage();return (c.user+c.system)/1000};while(u()<300);"; read end'], {
      stdio: ['pipe', 'ignore', 'ignore'],
    });
    try {
      const pid = parent.pid!;
      const before = cpuTotal(reapedChildrenCpu([pid]));
      parent.stdin.write('go\n');
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await childrenReaped([pid], 10_000);
      // the child ran for at least 300 ms of CPU, so the wait was for it
      expect(Date.now() - started).toBeGreaterThan(100);
      expect(cpuTotal(reapedChildrenCpu([pid])) - before).toBeGreaterThanOrEqual(290);
      // a process that is gone counts nothing
      expect(reapedChildrenCpu([2 ** 22 + 1])).toEqual({ userMs: 0, systemMs: 0 });
    } finally {
      parent.kill('SIGKILL');
    }
  });
});
