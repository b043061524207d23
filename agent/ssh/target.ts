import { DEFAULTS } from '../../model/spec';

/** Where and how the agent logs in to a host: the same shape as the constructs' `ssh` prop. */
export type { SshTarget } from '../../model/ssh-target';

export const DEFAULT_SSH_PORT = DEFAULTS.sshPort;
export const DEFAULT_SSH_USER = DEFAULTS.sshUser;

/** Environment variable that holds the private key's passphrase. */
export const PASSPHRASE_ENV = 'TULA_DSR_SSH_PASSPHRASE';
