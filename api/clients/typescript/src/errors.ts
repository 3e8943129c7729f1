// One error hierarchy, mapped from the API's envelope {"error": {code, message, details}} by
// HTTP status, with the same names as the Python client.

export class PIVOTError extends Error {
  override name = "PIVOTError";
}

export class APIConnectionError extends PIVOTError {
  override name = "APIConnectionError";
}

export class APIStatusError extends PIVOTError {
  override name = "APIStatusError";
  constructor(
    message: string,
    readonly status: number,
    readonly code: string,
    readonly details: Record<string, unknown> = {},
  ) {
    super(`${status} ${code}: ${message}`);
  }
}

export class BadRequestError extends APIStatusError {
  override name = "BadRequestError";
}
export class AuthenticationError extends APIStatusError {
  override name = "AuthenticationError";
}
export class PermissionDeniedError extends APIStatusError {
  override name = "PermissionDeniedError";
}
export class NotFoundError extends APIStatusError {
  override name = "NotFoundError";
}
export class ConflictError extends APIStatusError {
  override name = "ConflictError";
}
export class ValidationError extends APIStatusError {
  override name = "ValidationError";
}
export class RateLimitError extends APIStatusError {
  override name = "RateLimitError";
}
export class InternalServerError extends APIStatusError {
  override name = "InternalServerError";
}

const BY_STATUS: Record<number, typeof APIStatusError> = {
  400: BadRequestError,
  401: AuthenticationError,
  403: PermissionDeniedError,
  404: NotFoundError,
  409: ConflictError,
  422: ValidationError,
  429: RateLimitError,
};

export function errorFromBody(status: number, body: unknown, text: string): APIStatusError {
  let code = `HTTP_${status}`;
  let message = "";
  let details: Record<string, unknown> = {};
  const envelope = (body as { error?: unknown } | null)?.error;
  if (envelope && typeof envelope === "object") {
    const e = envelope as { code?: unknown; message?: unknown; details?: unknown };
    code = typeof e.code === "string" ? e.code : code;
    message = typeof e.message === "string" ? e.message : "";
    details = e.details && typeof e.details === "object" ? (e.details as Record<string, unknown>) : {};
  }
  if (!message) message = text.slice(0, 500) || `HTTP ${status}`;
  const Cls = BY_STATUS[status] ?? (status >= 500 ? InternalServerError : APIStatusError);
  return new Cls(message, status, code, details);
}
