// The health-check shapes are shared by the constructs (props) and the runtime (probes); they live in model/.
export type { HealthCheck, HealthCheckTiming, NoHealthCheck, TcpHealthCheck, HttpHealthCheck, UdpHealthCheck } from '../model/health-check';
