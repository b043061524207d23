/**
 * Extra login users on a lab host. They are written into the host's own /etc/passwd, /etc/group, /etc/shadow and
 * /etc/sudoers.d (overlays, see netns.ts), so they exist on that host only and vanish with it.
 */
import { shellQuote } from '../model/shell';

export interface LabUserSpec {
  /** Login name, `[a-z][a-z0-9-]*`, at most 31 characters; must not exist on the machine already. */
  readonly name: string;
  /** true: passwordless `sudo -n` for everything; false: no sudo rights at all. */
  readonly sudo: boolean;
}

const USER_NAME = /^[a-z][a-z0-9-]{0,30}$/;

export function validateUserName(name: string, existing: ReadonlySet<string>): void {
  if (!USER_NAME.test(name)) {
    throw new Error(`lab user name "${name}" is invalid: use [a-z][a-z0-9-]*, at most 31 characters`);
  }
  if (existing.has(name)) {
    throw new Error(`lab user name "${name}" exists on this machine already: pick another name`);
  }
}

export interface AddUserOptions extends LabUserSpec {
  readonly uid: number;
  readonly authorizedKey: string;
}

/**
 * Shell commands, run inside the host, that add the user with /bin/sh as login shell, a home with the lab's
 * client key, and (if asked) a sudoers.d entry. The shadow entry is `*`: no password login, but not "locked",
 * which sshd without PAM would refuse.
 */
export function renderAddUser(u: AddUserOptions): string {
  const home = `/home/${u.name}`;
  const lines = [
    `printf '%s\\n' ${shellQuote(`${u.name}:x:${u.uid}:${u.uid}:tula-dsr lab user:${home}:/bin/sh`)} >> /etc/passwd`,
    `printf '%s\\n' ${shellQuote(`${u.name}:x:${u.uid}:`)} >> /etc/group`,
    `printf '%s\\n' ${shellQuote(`${u.name}:*:19000:0:99999:7:::`)} >> /etc/shadow`,
    `mkdir -p ${shellQuote(`${home}/.ssh`)}`,
    `printf '%s\\n' ${shellQuote(u.authorizedKey)} > ${shellQuote(`${home}/.ssh/authorized_keys`)}`,
    `chown -R ${u.uid}:${u.uid} ${shellQuote(home)}`,
    `chmod 0755 ${shellQuote(home)} && chmod 0700 ${shellQuote(`${home}/.ssh`)}`,
    `chmod 0600 ${shellQuote(`${home}/.ssh/authorized_keys`)}`,
  ];
  if (u.sudo) {
    const file = `/etc/sudoers.d/tula-lab-${u.name}`;
    lines.push(`printf '%s\\n' ${shellQuote(`${u.name} ALL=(ALL:ALL) NOPASSWD: ALL`)} > ${shellQuote(file)}`, `chmod 0440 ${shellQuote(file)}`);
  }
  return lines.join('\n');
}
