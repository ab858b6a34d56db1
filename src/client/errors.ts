/** Every error the client raises is a ClientError with a stable `code` callers can branch on. */
export class ClientError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ClientError";
    this.code = code;
  }
}

/** A model file failed to download, or its bytes do not match the manifest (size or sha256). */
export class ModelFileError extends ClientError {
  readonly file: string;
  constructor(code: string, file: string, message: string, options?: { cause?: unknown }) {
    super(code, `${file}: ${message}`, options);
    this.name = "ModelFileError";
    this.file = file;
  }
}

/** No backend could run the model (unknown device, missing runtime, session creation failed). */
export class BackendError extends ClientError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = "BackendError";
  }
}

/**
 * An adapter was refused: damaged, for other factors, wrong rank or module count. `code` is
 * the format's error code (e.g. `factors_mismatch`); the model keeps its previous R.
 */
export class AdapterRefusedError extends ClientError {
  readonly user: string | undefined;
  constructor(code: string, message: string, user?: string, options?: { cause?: unknown }) {
    super(code, user === undefined ? message : `adapter of user ${user}: ${message}`, options);
    this.name = "AdapterRefusedError";
    this.user = user;
  }
}

/** What an API answer says beyond status and code: the API's `X-Request-Id`, for its logs. */
export interface ApiErrorDetails {
  requestId?: string | undefined;
}

/**
 * The edge API answered with an error status: `code` is the API's `error.code`, `requestId` its
 * `X-Request-Id` (the key to its log line). The subclasses below name the statuses callers
 * usually branch on.
 */
export class ApiError extends ClientError {
  readonly status: number;
  readonly url: string;
  readonly requestId: string | undefined;
  /** The API's `error.message`, without the status, code and URL `message` adds. */
  readonly detail: string;
  constructor(
    status: number,
    code: string,
    message: string,
    url: string,
    details: ApiErrorDetails = {},
  ) {
    super(code, `${status} ${code}: ${message} (${url})`);
    this.name = "ApiError";
    this.status = status;
    this.url = url;
    this.requestId = details.requestId;
    this.detail = message;
  }
}
/** 401 / 403: missing, expired or foreign token. */
export class AuthError extends ApiError {
  override readonly name = "AuthError";
}
/** 422 (and 400, 413): the API validated the request and refused it; `code` says why. */
export class ValidationError extends ApiError {
  override readonly name = "ValidationError";
}
/** 412: `If-Match` named a version that is no longer current. */
export class ConflictError extends ApiError {
  override readonly name = "ConflictError";
}
/** 404: no such model or the user has no adapter yet. */
export class NotFoundError extends ApiError {
  override readonly name = "NotFoundError";
}
/** 429: too many requests; `retryAfterSeconds` from the `Retry-After` header (undefined if absent). */
export class RateLimitError extends ApiError {
  override readonly name = "RateLimitError";
  readonly retryAfterSeconds: number | undefined;
  constructor(
    code: string,
    message: string,
    url: string,
    retryAfterSeconds: number | undefined,
    details: ApiErrorDetails = {},
  ) {
    super(429, code, message, url, details);
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

/** The network failed and no cached copy exists to fall back on. */
export class OfflineError extends ClientError {
  /** The URL that did not answer. */
  readonly url: string;
  constructor(url: string, options?: { cause?: unknown }) {
    super("offline", `cannot reach ${url} and no cached copy exists`, options);
    this.name = "OfflineError";
    this.url = url;
  }
}

/** Generation was cancelled through its AbortSignal. */
export class AbortedError extends ClientError {
  constructor(reason?: unknown) {
    super("aborted", `generation aborted${reason === undefined ? "" : `: ${String(reason)}`}`);
    this.name = "AbortedError";
  }
}
