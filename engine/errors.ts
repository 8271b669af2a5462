// Errors the engine reports to the user as one line (no stack trace).
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
