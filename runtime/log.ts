/**
 * The runtime's log: one line per event on stderr, which systemd hands to the journal and the agent's supervisor (on
 * hosts without systemd) appends to a file. Events, not chatter: state changes, applied updates, errors.
 */
export type LogLevel = 'info' | 'warn' | 'error';

export interface Logger {
  (level: LogLevel, message: string): void;
}

export function stderrLogger(write: (line: string) => void = (line) => process.stderr.write(line)): Logger {
  return (level, message) => write(`${new Date().toISOString()} tula-dsr-runtime ${level}: ${message}\n`);
}
