// Typed API errors: callers branch on the class, never on status codes or message text.
export class ApiError extends Error {
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}
export class NotFoundError extends ApiError {
  constructor(message: string) {
    super(404, 'NotFound', message);
    this.name = 'NotFoundError';
  }
}
/** 409: AlreadyExists on create, Conflict on a stale resourceVersion. */
export class ConflictError extends ApiError {
  constructor(message: string, reason: string) {
    super(409, reason || 'Conflict', message);
    this.name = 'ConflictError';
  }
}
export function isNotFound(e: unknown): e is NotFoundError {
  return e instanceof NotFoundError;
}
export function isConflict(e: unknown): e is ConflictError {
  return e instanceof ConflictError;
}
