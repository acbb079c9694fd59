/**
 * An error in what the user asked to load: a bad model spec, a missing or malformed config.json, a
 * truncated or inconsistent safetensors file, a tokenizer that cannot be read. Its message is meant
 * to be shown as is (one line, naming the file and the field), never with a stack trace.
 */
export class ModelError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModelError';
  }
}

/** Short description of any thrown value, for wrapping foreign errors into ModelError messages. */
export function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
