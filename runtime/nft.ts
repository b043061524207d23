import { spawn } from 'node:child_process';
import { BALANCER_TABLE } from '../model';

/** The host-wide lock the agent's apply scripts hold: the runtime's updates never interleave with a reload. */
export const HOST_LOCK = '/run/tula-dsr.lock';

export interface NftRunner {
  /** Loads `text` with `nft -f -` (one transaction) under the host lock; rejects with nft's message on failure. */
  apply(text: string): Promise<void>;
  /** `nft -j list set|map netdev tula_dsr NAME`, parsed; null when it does not exist. */
  list(kind: 'set' | 'map', name: string): Promise<NftListedElement[] | null>;
}

/** One element of a listed set or map: the key's parts, the value (maps), the counter (sets with counters). */
export interface NftListedElement {
  readonly key: readonly string[];
  readonly value?: string;
  readonly packets?: number;
  readonly bytes?: number;
}

/** Runs a command without a shell (LC_ALL=C), with a deadline; never rejects for a non-zero exit. */
export function runCommand(argv: readonly string[], input?: string, timeoutMs = 15_000): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'], env: { ...process.env, LC_ALL: 'C' } });
    let stdout = '';
    let stderr = '';
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, stdout, stderr: signal ? `${stderr}killed by ${signal} after ${timeoutMs} ms` : stderr });
    });
    // a command that exits without reading its input must not crash the runtime (EPIPE): its exit code tells
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(input);
  });
}

const text = (v: unknown): string => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : JSON.stringify(v));

/** Reads `nft -j` output of one set or map: keys are single values or concatenations. */
export function parseListedElements(json: string): NftListedElement[] {
  const data = JSON.parse(json) as { nftables?: Record<string, { elem?: unknown[] }>[] };
  const object = data.nftables?.map((o) => o.set ?? o.map).find((o) => o !== undefined);
  const elements: NftListedElement[] = [];
  for (const raw of object?.elem ?? []) {
    // a map element is [key, value]; a set element is the key, or { elem: { val, counter } } with a counter
    const [keyPart, value] = Array.isArray(raw) ? raw : [raw, undefined];
    const inner = (keyPart as { elem?: { val: unknown; counter?: { packets: number; bytes: number } } })?.elem;
    const val = inner ? inner.val : keyPart;
    const concat = (val as { concat?: unknown[] })?.concat;
    elements.push({
      key: concat ? concat.map(text) : [text(val)],
      ...(value !== undefined ? { value: text(value) } : {}),
      ...(inner?.counter ? { packets: inner.counter.packets, bytes: inner.counter.bytes } : {}),
    });
  }
  return elements;
}

/** `prefix` runs nft through another command (tests and benches: `ip netns exec NS`). */
export function systemNft(lock = HOST_LOCK, prefix: readonly string[] = []): NftRunner {
  return {
    async apply(input) {
      const r = await runCommand(['flock', '-w', '10', lock, ...prefix, 'nft', '-f', '-'], input);
      if (r.code !== 0 || r.stderr.trim()) throw new Error(`nft -f refused the update (exit ${r.code}): ${r.stderr.trim()}`);
    },
    async list(kind, name) {
      const r = await runCommand([...prefix, 'nft', '-j', 'list', kind, 'netdev', BALANCER_TABLE, name]);
      if (r.code !== 0) return null;
      return parseListedElements(r.stdout);
    },
  };
}
