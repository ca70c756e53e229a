// Installs missing Debian packages the way the project's tools do (models/build.sh, cluster,
// convert): with apt-get as root, through sudo otherwise, refusing with the package names when
// neither is possible.
import { spawnSync } from 'node:child_process';

export interface AptRequest {
  /** What is missing, e.g. "HAProxy is not installed"; starts the log line and the error. */
  why: string;
  /** Another way out, added to the error when this user cannot install, e.g. "or pass --haproxy PATH". */
  otherwise?: string;
  log: (message: string) => void;
}

/** Installs `packages` with apt-get (one retry after `apt-get update`); throws, naming them, when
 *  this user can neither run apt-get nor sudo, or the install fails. */
export function aptInstall(packages: string[], { why, otherwise, log }: AptRequest): void {
  const names = packages.join(' ');
  const root = process.getuid?.() === 0;
  const sudo = !root && spawnSync('sh', ['-c', 'command -v sudo'], { encoding: 'utf8' }).stdout.trim();
  if (!root && !sudo) throw new Error(`${why} and this user cannot install it: apt-get install ${names}${otherwise ? `, ${otherwise}` : ''}`);
  log(`${why}: installing Debian's ${names}`);
  const apt = (args: string[]) =>
    spawnSync(root ? 'apt-get' : 'sudo', root ? args : ['apt-get', ...args], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  const install = ['install', '-y', '--no-install-recommends', ...packages];
  if (apt(install).status !== 0) {
    apt(['update']);
    if (apt(install).status !== 0) throw new Error(`apt-get install ${names} failed`);
  }
}
