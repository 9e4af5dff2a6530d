import { readFileSync } from 'node:fs';
import path from 'node:path';

// The commit this worker runs: the REVISION file tj-deploy writes into the release (the
// worker's cwd, the `current` symlink, resolves to it when the worker starts), else the
// deploy hooks' TJ_REVISION. The file comes first: PM2 keeps a worker's environment from its
// first start unless `--update-env` reaches it, while the cwd is always the worker's own.
export function revision() {
  try {
    const rev = readFileSync(path.join(process.cwd(), 'REVISION'), 'utf8').trim();
    if (rev) return rev;
  } catch {
    // Not deployed by tj-deploy (e.g. `next start` in a checkout).
  }
  return process.env.TJ_REVISION || null;
}
