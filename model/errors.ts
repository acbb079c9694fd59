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

/**
 * Why JSON.parse failed, without the text: Node 22's SyntaxError quotes the start of the input,
 * and the input may be any file a link pointed at. Keeps only the position.
 */
export function describeJsonError(err: unknown): string {
  const pos = /position (\d+)/.exec(err instanceof Error ? err.message : '');
  return pos ? `malformed JSON at position ${pos[1]}` : 'malformed JSON';
}
