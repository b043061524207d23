// The SSH target shape is shared by the constructs (props) and the agent (connections); it lives in model/.
export type { SshTarget } from '../model/ssh-target';
