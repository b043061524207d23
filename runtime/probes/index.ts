import { isIPv6 } from 'node:net';
import type { ProbeTarget } from '../../model';
import { ProbeOptions, ProbeResult } from './attempt';
import { probeHttp } from './http';
import { probeTcp } from './tcp';
import { probeUdp } from './udp';

export type { ProbeOptions, ProbeResult } from './attempt';

/**
 * The Host header of an HTTP check without one: the address of the VIP probed through (and its port unless 80); an
 * IPv6 address in brackets, as in a URL (RFC 7230, 5.4).
 */
export function defaultHostHeader(via: ProbeTarget['via']): string {
  const host = isIPv6(via.ip) ? `[${via.ip}]` : via.ip;
  return via.port === 80 ? host : `${host}:${via.port}`;
}

/** Sends one probe of `target`'s check to `options.host:port`; resolves (never rejects) with its result. */
export function runProbe(target: Pick<ProbeTarget, 'check' | 'via'>, options: ProbeOptions): Promise<ProbeResult> {
  const { check } = target;
  const timeoutMs = options.timeoutMs ?? Math.round(check.timeoutSec * 1000);
  switch (check.kind) {
    case 'tcp':
      return probeTcp(options, timeoutMs);
    case 'http':
      return probeHttp({ path: check.path, expectStatus: check.expectStatus, host: check.host ?? defaultHostHeader(target.via) }, options, timeoutMs);
    case 'udp':
      return probeUdp(check, options, timeoutMs);
  }
}
