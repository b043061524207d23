/**
 * An agent daemon whose runs fault on request, so that tests can show that a fault in one request ends that request
 * only (test support; the real daemon runs the CLI). Usage: `node faulty-daemon.js SOCKET`. The request's argv says
 * what its run does:
 *  - `slow MS`: prints "slow done" after MS milliseconds and exits 0;
 *  - `throw-later`: throws from a timer, where nothing can catch it;
 *  - `reject-later`: leaves a rejected promise that nothing handles;
 *  - `throw`: its run rejects.
 */
import { serve } from '../../agent/daemon/server';
import type { CliIo } from '../../agent/io';

function faultyRun(argv: readonly string[], io: CliIo): Promise<number> {
  switch (argv[0]) {
    case 'slow':
      return new Promise((resolve) =>
        setTimeout(() => {
          io.stdout('slow done\n');
          resolve(0);
        }, Number(argv[1])),
      );
    case 'throw-later':
      setTimeout(() => {
        throw new Error('thrown from a timer');
      }, 50);
      return new Promise(() => undefined);
    case 'reject-later':
      setTimeout(() => void Promise.reject(new Error('rejected with no handler')), 50);
      return new Promise(() => undefined);
    default:
      return Promise.reject(new Error('the run rejected'));
  }
}

void serve(process.argv[2], 60_000, faultyRun).then(() => process.exit(0));
