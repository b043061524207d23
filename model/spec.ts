import { z } from 'zod';
import { isSingleLinePrintable, showValue } from './issues';
import {
  ALGORITHMS,
  MODES,
  PROTOCOLS,
  Algorithm,
  Mode,
  Protocol,
  FieldCheck,
  checkAlgorithm,
  checkBoolean,
  checkCidr,
  checkFilePath,
  checkFlowTimeout,
  checkHashTableSize,
  checkHostKey,
  checkInterface,
  checkIpv4,
  checkIpv6,
  checkIpv6Cidr,
  checkUnicastIp,
  checkMac,
  checkMode,
  checkMssClamp,
  checkName,
  checkPort,
  checkProtocol,
  checkSshHost,
  checkUser,
  checkVipPort,
  checkWeight,
} from './fields';
import { createHealthCheckSchema } from './health-check';
import { createStatsTextfileFields, withStatsDefaults } from './stats-textfile';
import { createPairSpecSchema } from './pair-fields';

export { ALGORITHMS, MODES, PROTOCOLS };
export type { Algorithm, Mode, Protocol };

/** Values a construct may hold as Terraform tokens; they are validated by the agent once Terraform resolves them. */
export type IsUnresolved = (value: unknown) => boolean;

export const DEFAULTS = {
  sshPort: 22,
  sshUser: 'root',
  weight: 1,
  flowTimeoutSec: 300,
  mssClamp: 1440,
  /** IPv6 in IPv6 costs 40 bytes (1460 left of a 1500-byte path) and the inner IPv6 header 40: 1460 - 40 - 20. */
  mssClamp6: 1400,
  protocol: 'tcp' as Protocol,
  mode: 'l2' as Mode,
  algorithm: 'weighted-round-robin' as Algorithm,
  persist: true,
};

/**
 * Builds the schemas once per token predicate. Constructs pass cdktf's `Token.isUnresolved`, so that a token is
 * accepted at synth; the agent passes nothing, so that the same schemas reject anything still unresolved.
 */
export function createSpecSchemas(isUnresolved: IsUnresolved = () => false) {
  const field = <T>(check: FieldCheck) => z.custom<T>((v) => isUnresolved(v) || check(v) === null, { error: (iss) => check(iss.input) ?? 'is not allowed' });
  const constructPath = z.custom<string>(isSingleLinePrintable, {
    error: (iss) =>
      `${showValue(iss.input)} is not a usable construct path; it is written into comments of config files and nft rulesets, so use a single line of printable characters (no control character such as a line break)`,
  });

  const SshTargetSpecSchema = z.strictObject({
    host: field<string>(checkSshHost),
    port: field<number>(checkPort).default(DEFAULTS.sshPort),
    user: field<string>(checkUser).default(DEFAULTS.sshUser),
    privateKeyPath: field<string>(checkFilePath).optional(),
    hostKey: field<string>(checkHostKey).optional(),
    knownHostsFile: field<string>(checkFilePath).optional(),
  });

  /** Absent means kind 'none': a spec without health checks stays byte-identical (no replacement on upgrade). */
  const HealthCheckSpecSchema = createHealthCheckSchema(isUnresolved);

  const BackendSpecSchema = z.strictObject({
    path: constructPath,
    name: field<string>(checkName),
    ip: field<string>(checkUnicastIp),
    port: field<number>(checkPort).optional(),
    weight: field<number>(checkWeight).default(DEFAULTS.weight),
    mac: field<string>(checkMac).optional(),
    /** Replaces the VIP's check for this backend. */
    healthCheck: HealthCheckSpecSchema.optional(),
  });

  const VipSpecSchema = z.strictObject({
    path: constructPath,
    name: field<string>(checkName),
    ip: field<string>(checkUnicastIp),
    port: field<number | '*'>(checkVipPort),
    protocol: field<Protocol>(checkProtocol).default(DEFAULTS.protocol),
    mode: field<Mode>(checkMode).default(DEFAULTS.mode),
    algorithm: field<Algorithm>(checkAlgorithm).default(DEFAULTS.algorithm),
    flowTimeoutSec: field<number>(checkFlowTimeout).default(DEFAULTS.flowTimeoutSec),
    mssClamp: field<number>(checkMssClamp).optional(),
    hashTableSize: field<number>(checkHashTableSize).optional(),
    healthCheck: HealthCheckSpecSchema.optional(),
    backends: z.array(BackendSpecSchema),
  });

  const BalancerSpecSchema = z
    .strictObject({
      kind: z.literal('balancer'),
      path: constructPath,
      name: field<string>(checkName),
      ssh: SshTargetSpecSchema,
      interface: field<string>(checkInterface),
      address: field<string>(checkIpv4).optional(),
      ipv6Address: field<string>(checkIpv6).optional(),
      subnet: field<string>(checkCidr).optional(),
      ipv6Subnet: field<string>(checkIpv6Cidr).optional(),
      mac: field<string>(checkMac).optional(),
      ...createStatsTextfileFields(isUnresolved),
      /** Set on the members of a BalancerPair: keepalived holds the VIPs on the active member. */
      pair: createPairSpecSchema({ field, constructPath }).optional(),
      vips: z.array(VipSpecSchema),
    })
    .overwrite(withStatsDefaults);

  /** What a backend host must serve for one VIP; derived from every Backend that names the host. */
  const ServiceSpecSchema = z.strictObject({
    path: constructPath,
    ip: field<string>(checkUnicastIp),
    port: field<number | '*'>(checkVipPort),
    protocol: field<Protocol>(checkProtocol),
    mode: field<Mode>(checkMode),
    mssClamp: field<number>(checkMssClamp).optional(),
  });

  const BackendHostSpecSchema = z.strictObject({
    kind: z.literal('backend'),
    path: constructPath,
    name: field<string>(checkName),
    ssh: SshTargetSpecSchema,
    address: field<string>(checkIpv4).optional(),
    ipv6Address: field<string>(checkIpv6).optional(),
    persist: field<boolean>(checkBoolean).default(DEFAULTS.persist),
    services: z.array(ServiceSpecSchema),
  });

  const HostSpecSchema = z.discriminatedUnion('kind', [BalancerSpecSchema, BackendHostSpecSchema]);

  return {
    SshTargetSpecSchema,
    HealthCheckSpecSchema,
    BackendSpecSchema,
    VipSpecSchema,
    BalancerSpecSchema,
    ServiceSpecSchema,
    BackendHostSpecSchema,
    HostSpecSchema,
  };
}

export type SpecSchemas = ReturnType<typeof createSpecSchemas>;
export const StrictSpecSchemas: SpecSchemas = createSpecSchemas();

export type SshTargetSpec = z.infer<SpecSchemas['SshTargetSpecSchema']>;
export type BackendSpec = z.infer<SpecSchemas['BackendSpecSchema']>;
export type VipSpec = z.infer<SpecSchemas['VipSpecSchema']>;
export type BalancerSpec = z.infer<SpecSchemas['BalancerSpecSchema']>;
export type ServiceSpec = z.infer<SpecSchemas['ServiceSpecSchema']>;
export type BackendHostSpec = z.infer<SpecSchemas['BackendHostSpecSchema']>;
export type HostSpec = BalancerSpec | BackendHostSpec;
