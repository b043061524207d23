/**
 * What the constructs know of each other, as aws-cdk-lib's `I…` interfaces: each construct file imports these
 * instead of the other classes, so there is no import circle, and a runtime check asks for a brand instead of
 * probing for methods.
 */
import type { TerraformResource } from 'cdktf';
import type { IConstruct } from 'constructs';
import type { BackendSpec, PairSpec, SpecIssue, VipSpec } from '../model';

/** Something VIPs attach to: it collects their problems and renders their rules. */
export interface IBalancer extends IConstruct {
  /** The Terraform resource that applies the configuration. */
  readonly resource: TerraformResource;
  /** The VIPs bound to it, in creation order. */
  readonly vips: readonly IDsrVip[];
  /** @internal */
  _addVip(vip: IDsrVip): void;
  /** @internal Forgets cached problems after a VIP or backend was added. */
  _invalidate(): void;
  /** @internal Every problem of the balancer, its VIPs and their backends. */
  _issues(): SpecIssue[];
}

/** @internal How a BalancerPair tells a member its side of the pair. */
export interface PairMembership {
  /** The member's side of the pair; undefined while the pair has problems of its own. */
  spec(): PairSpec | undefined;
  /** The pair's own problems (carrying the pair's path). */
  issues(): SpecIssue[];
}

/** A balancer that can join a BalancerPair. */
export interface IPairMember extends IBalancer {
  /** @internal */
  readonly _pair: PairMembership | undefined;
  /** @internal */
  _joinPair(membership: PairMembership): void;
  /** @internal */
  _memberView(): { address?: string; subnet?: string; sshHost?: unknown; sshPort?: unknown; sshHostKey?: unknown; sshKnownHostsFile?: unknown };
}

export interface IDsrVip extends IConstruct {
  readonly balancer: IBalancer;
  readonly backends: readonly IBackend[];
  /** @internal The VIP's address as given (a backend's default address is of its family). */
  readonly _ip: unknown;
  /** @internal */
  _addBackend(backend: IBackend): void;
  /** @internal The VIP's own fields and its backends, parsed with the synth-time schemas. */
  _parse(): { value?: VipSpec; issues: SpecIssue[] };
}

export interface IBackend extends IConstruct {
  readonly vip: IDsrVip;
  readonly host?: IBackendHost;
  /** @internal */
  _parse(): { value?: BackendSpec; issues: SpecIssue[] };
}

export interface IBackendHost extends IConstruct {
  readonly resource: TerraformResource;
  /** The address Backends of IPv4 VIPs default to, if known at synth. */
  readonly address?: string;
  /** The address Backends of IPv6 VIPs default to, if known at synth. */
  readonly ipv6Address?: string;
  /** @internal */
  _register(backend: IBackend): void;
  /** @internal A VIP this host serves changed: its spec is built again. */
  _invalidate(): void;
}

const BRANDS = {
  balancer: Symbol.for('tula-dsr.Balancer'),
  vip: Symbol.for('tula-dsr.DsrVip'),
  backendHost: Symbol.for('tula-dsr.BackendHost'),
  pairMember: Symbol.for('tula-dsr.Balancer.member'),
} as const;

/** Marks a construct as one of ours (Symbol.for, so that two copies of the library still recognise each other). */
export function brand(construct: object, kind: keyof typeof BRANDS): void {
  Object.defineProperty(construct, BRANDS[kind], { value: true });
}

const branded = (x: unknown, kind: keyof typeof BRANDS) => typeof x === 'object' && x !== null && (x as Record<symbol, unknown>)[BRANDS[kind]] === true;

export const isBalancer = (x: unknown): x is IBalancer => branded(x, 'balancer');
export const isDsrVip = (x: unknown): x is IDsrVip => branded(x, 'vip');
export const isPairMember = (x: unknown): x is IPairMember => branded(x, 'pairMember');
export const isBackendHost = (x: unknown): x is IBackendHost => branded(x, 'backendHost');
