/** Constants and small text helpers shared by the test fixtures. */
import { backendId } from '../../model';

/** A syntactically valid pinned host key (never used to connect). */
export const HOST_KEY = 'SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
export const LB_IP = '10.0.1.2';
export const LB_MAC = '02:00:00:00:00:01';

/** A made-up but unique MAC per backend address: 02:00 + the address in hex. */
export function macOf(ip: string): string {
  return `02:00:${backendId(ip).match(/../g)!.join(':')}`;
}

/**
 * The plan (review) text leaves apply-time MACs as commented defines; nft needs values. This fills them exactly
 * as the agent's facts would (see macOf), so that everything else in the reviewed text is checked by nft as written.
 */
export function fillPendingDefines(text: string): string {
  return text.replace(/^# define (\w+) = <[^>\n]*>$/gm, (_line, name: string) => {
    if (name === 'lb_mac') return `define lb_mac = ${LB_MAC}`;
    const hex = /^mac_([0-9a-f]{8})$/.exec(name);
    if (!hex) throw new Error(`fillPendingDefines: unexpected pending define ${name}`);
    return `define ${name} = 02:00:${hex[1].match(/../g)!.join(':')}`;
  });
}

/** What `run` throws (undefined when it returns), so that a test can look at the error itself, not only its message. */
export function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

/** The fields every balancer spec in the model tests shares (as JSON: what the agent receives): lb1 on eth0, a fresh copy each time. */
export const lb1Json = () => ({
  kind: 'balancer',
  path: 's/lb1',
  name: 'lb1',
  ssh: { host: '10.0.1.2', hostKey: HOST_KEY },
  interface: 'eth0',
});
