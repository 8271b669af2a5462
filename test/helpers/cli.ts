// Running the built crit command the way users do.
import { spawnSync, SpawnSyncReturns } from 'child_process';
import * as path from 'path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CRIT_BIN = path.join(ROOT, 'bin', 'crit.js');

export function crit(args: string[], input?: Buffer | string): SpawnSyncReturns<Buffer> {
  return spawnSync(process.execPath, [CRIT_BIN, ...args], { input, maxBuffer: 1 << 30 });
}

export function sh(cmd: string): SpawnSyncReturns<Buffer> {
  return spawnSync('/bin/bash', ['-c', cmd], { maxBuffer: 1 << 30 });
}
