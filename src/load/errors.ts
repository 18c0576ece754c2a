/**
 * Boundary errors: what was expected, what was found, and how to fix it, in one line. Internal invariants use
 * `assert` instead and are never caught.
 */

/**
 * A model folder, checkpoint, tokenizer or config that cannot be used as it is. With `key`, the message names the
 * key of the file: `<file>: "<key>": expected …, found …`.
 */
export class LoadError extends Error {
  readonly key?: string;

  constructor(
    readonly file: string,
    readonly expected: string,
    readonly found: string,
    readonly hint?: string,
    opts: { readonly key?: string } = {},
  ) {
    super(
      oneLine(`${file}: ${opts.key !== undefined ? `${JSON.stringify(opts.key)}: ` : ''}expected ${clip(expected)}, found ${clip(found)}${hint ? ` (${hint})` : ''}`),
    );
    this.name = 'LoadError';
    if (opts.key !== undefined) this.key = opts.key;
  }
}

/** Longest `expected` / `found` text in a message: values from a hostile file can be megabytes long. */
const MAX_PART = 300;

function clip(v: string): string {
  const s = String(v); // a JSON.stringify(undefined) passed as text must not break the error itself
  return s.length > MAX_PART ? `${s.slice(0, MAX_PART - 3)}...` : s;
}

/** Line breaks and other control characters (from names in a hostile file) escaped, so a message is one line. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => (c === '\n' ? '\\n' : c === '\r' ? '\\r' : c === '\t' ? '\\t' : `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`));
}

/** Invalid generation options or request fields. */
export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}
