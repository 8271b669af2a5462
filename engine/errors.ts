// Errors the engine reports to the user as one line (no stack trace).
import { isNativeError } from '../native';
export class EngineError extends Error {
  constructor(message: string, public code?: string) {
    super(message);
    this.name = 'EngineError';
  }
}

/** An fd or state the dumper cannot represent: names the task, fd and kind. */
export class UnsupportedError extends EngineError {
  constructor(message: string) {
    super(message, 'EUNSUPPORTED');
    this.name = 'UnsupportedError';
  }
}

/** The one line a command prints for an error: ours and the kernel's as they are, anything else as internal. */
export function errorText(e: unknown): string {
  if (e instanceof EngineError || isNativeError(e)) return e.message;
  return e instanceof Error ? `internal error: ${e.message}` : String(e);
}
