/**
 * One exec channel running `sh -s` that serves several runs in turn: each run is written to the shell's stdin as a
 * subshell followed by an end marker on stdout (with its exit status) and on stderr. The shell then waits for the
 * next run. A host starts its login shell and sh once per connection instead of once per run (the facts and the
 * apply script of a run), which counts when a hundred hosts start theirs at once on the same cores.
 */
import { randomBytes } from 'crypto';
import type { ClientChannel } from 'ssh2';
import { wrapScript } from './wrap-script';

/** Finds a marker line (`MARKER rest\n`) in a stream that arrives in chunks, without joining them on every chunk. */
export class MarkerScanner {
  private readonly chunks: Buffer[] = [];
  private length = 0;
  private tail = Buffer.alloc(0);
  private at = -1;
  /** What followed the marker on its line, once the line is complete. */
  line: string | undefined;

  constructor(private readonly marker: Buffer) {}

  /** Adds a chunk; true once the marker's whole line has arrived. */
  push(chunk: Buffer): boolean {
    this.chunks.push(chunk);
    const before = this.length;
    this.length += chunk.length;
    if (this.at < 0) {
      const window = Buffer.concat([this.tail, chunk]);
      const i = window.indexOf(this.marker);
      if (i < 0) {
        this.tail = window.subarray(Math.max(0, window.length - this.marker.length + 1));
        return false;
      }
      this.at = before - this.tail.length + i;
    }
    const rest = Buffer.concat(this.chunks).subarray(this.at + this.marker.length);
    const end = rest.indexOf(0x0a);
    if (end < 0) return false;
    this.line = rest.subarray(0, end).toString('utf8');
    return true;
  }

  /** Everything before the marker (all of it while the marker has not come). */
  before(): string {
    const all = Buffer.concat(this.chunks);
    return (this.at < 0 ? all : all.subarray(0, this.at)).toString('utf8');
  }
}

export interface ExchangeHandlers {
  /** Each chunk of output, stdout's and stderr's; false stops the exchange (the caller closes the channel). */
  readonly onChunk: (bytes: number) => boolean;
  readonly onDone: (result: { stdout: string; stderr: string; code: number }) => void;
  /** The channel closed before the run's end markers came: the shell is gone, the result is the channel's. */
  readonly onClosed: (partial: { stdout: string; stderr: string; exit?: { code: number | null; signal?: string } }) => void;
}

export class ShellChannel {
  private current: ((source: 'out' | 'err' | 'close', chunk?: Buffer) => void) | undefined;
  private exit: { code: number | null; signal?: string } | undefined;
  closed = false;

  constructor(readonly stream: ClientChannel) {
    stream.on('data', (b: Buffer) => this.current?.('out', b));
    stream.stderr.on('data', (b: Buffer) => this.current?.('err', b));
    stream.on('exit', (code: number | null, signal?: string) => {
      this.exit = { code, signal };
    });
    stream.on('close', () => {
      this.closed = true;
      this.current?.('close');
    });
  }

  /** Whether a run is in progress on it. */
  get busy(): boolean {
    return this.current !== undefined;
  }

  /** Writes one run to the shell. Its handlers are called until it is done or the channel closes. */
  exchange(script: string, stdin: string | Buffer | undefined, handlers: ExchangeHandlers): void {
    const nonce = `tula-dsr-end-${randomBytes(12).toString('hex')}`;
    const out = new MarkerScanner(Buffer.from(`${nonce} `));
    const err = new MarkerScanner(Buffer.from(nonce));
    let outDone = false;
    let errDone = false;
    this.current = (source, chunk) => {
      if (source === 'close') {
        this.current = undefined;
        handlers.onClosed({ stdout: out.before(), stderr: err.before(), exit: this.exit });
        return;
      }
      if (!handlers.onChunk(chunk!.length)) {
        this.current = undefined;
        return;
      }
      if (source === 'out') outDone ||= out.push(chunk!);
      else errDone ||= err.push(chunk!);
      if (outDone && errDone) {
        this.current = undefined;
        handlers.onDone({ stdout: out.before(), stderr: err.before(), code: Number(out.line) });
      }
    };
    // The subshell keeps each run's variables, traps, `exit` and `exec` to itself; the line after it is parsed with
    // it, so the markers cannot be cut off from the run by a slow transfer.
    this.stream.write(`(\n${wrapScript(script, stdin)}) ; printf '%s %s\\n' ${nonce} "$?"; printf '%s\\n' ${nonce} >&2\n`);
  }

  /** Ends the shell (EOF on its stdin). */
  end(): void {
    if (!this.closed) this.stream.end();
  }

  close(): void {
    if (!this.closed) this.stream.close();
  }
}
