/**
 * Boundary errors: what was expected, what was found, and how to fix it, in one line. Internal invariants use
 * `assert` instead and are never caught.
 */

/** A model folder, checkpoint, tokenizer or config that cannot be used as it is. */
export class LoadError extends Error {
  constructor(
    readonly file: string,
    readonly expected: string,
    readonly found: string,
    readonly hint?: string,
  ) {
    super(`${file}: expected ${expected}, found ${found}${hint ? ` (${hint})` : ''}`);
    this.name = 'LoadError';
  }
}

/** Invalid generation options or request fields. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
