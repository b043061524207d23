import { Socket, connect } from 'node:net';
import { ProbeOptions, ProbeResult, attempt, describeError } from './attempt';

/**
 * Closes a probe's TCP socket: a connection that was established is reset (RST), so the balancer keeps no
 * TIME_WAIT entry per probe; one still connecting is simply dropped.
 */
export function closeProbeSocket(socket: Socket | undefined, established: boolean): void {
  if (!socket) return;
  socket.on('error', () => {}); // errors after the result belong to no one
  if (established && !socket.destroyed) socket.resetAndDestroy();
  else socket.destroy();
}

/** Passes when the connection is accepted. */
export function probeTcp(options: ProbeOptions, timeoutMs: number): Promise<ProbeResult> {
  return attempt(timeoutMs, options.signal, (settle) => {
    let established = false;
    const socket = connect({ host: options.host, port: options.port, localAddress: options.localAddress, localPort: options.localPort });
    socket.once('connect', () => {
      established = true;
      settle(true);
    });
    socket.on('error', (error) => settle(false, describeError(error, options)));
    return { dispose: () => closeProbeSocket(socket, established) };
  });
}
