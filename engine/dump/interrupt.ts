// Interruption of a dump: while the guard is on, SIGINT/SIGTERM/SIGHUP are only recorded by the
// addon, and the dump checks for them between steps; the usual failure path then puts the tree
// back (scratch pages unmapped, registers restored, detached) and removes the partial output.
import * as fs from 'fs';
import { native } from '../../native';
import { EngineError } from '../errors';

const NAMES: Record<number, string> = { 1: 'SIGHUP', 2: 'SIGINT', 15: 'SIGTERM' };

export class InterruptedError extends EngineError {
  constructor(readonly signal: number) {
    super(`interrupted by ${NAMES[signal] ?? `signal ${signal}`}: the tree was resumed as it was and no images were written`, 'EINTR');
    this.name = 'InterruptedError';
  }
}

/** Throws InterruptedError once a guarded signal has arrived. */
export function checkInterrupted(): void {
  const sig = native().interruptPending();
  if (sig) throw new InterruptedError(sig);
}

const sleepCell = new Int32Array(new SharedArrayBuffer(4));

/**
 * Fault-injection point for the tests: with ENGINE_TEST_HOLD=<stage>:<file>, the dump creates
 * <file> (holding the engine's pid) on reaching <stage> and waits, tree frozen, until the file
 * is removed (at most 30 s), so that a test can act at an exact moment of the dump.
 */
export function holdForTest(stage: string): void {
  const spec = process.env.ENGINE_TEST_HOLD;
  if (!spec) return;
  const i = spec.indexOf(':');
  if (i < 0 || spec.slice(0, i) !== stage) return;
  const marker = spec.slice(i + 1);
  fs.writeFileSync(marker, `${process.pid}\n`);
  const until = Date.now() + 30_000;
  while (fs.existsSync(marker) && Date.now() < until) {
    checkInterrupted();
    Atomics.wait(sleepCell, 0, 0, 5);
  }
  checkInterrupted();
}
