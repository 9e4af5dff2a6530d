import { readFileSync } from 'node:fs';
import path from 'node:path';

// The commit this worker runs: the reload hook's TJ_REVISION (PM2 --update-env), else the
// REVISION file tj-deploy writes into the release (the worker's cwd resolves to it).
export function revision() {
  if (process.env.TJ_REVISION) return process.env.TJ_REVISION;
  try {
    return readFileSync(path.join(process.cwd(), 'REVISION'), 'utf8').trim();
  } catch {
    return null;
  }
}
