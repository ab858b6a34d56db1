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

/** The edge API answered with an error status; `code` is the API's `error.code`. */
export class ApiError extends ClientError {
  readonly status: number;
  readonly url: string;
  constructor(status: number, code: string, message: string, url: string) {
    super(code, `${status} ${code}: ${message} (${url})`);
    this.name = "ApiError";
    this.status = status;
    this.url = url;
  }
}
/** 401 / 403: missing, expired or foreign token. */
export class AuthError extends ApiError {
  constructor(status: number, code: string, message: string, url: string) {
    super(status, code, message, url);
    this.name = "AuthError";
  }
}
/** 422: the API validated the adapter and refused it; `code` says why. */
export class ValidationError extends ApiError {
  constructor(status: number, code: string, message: string, url: string) {
    super(status, code, message, url);
    this.name = "ValidationError";
  }
}
/** 412: `If-Match` named a version that is no longer current. */
export class ConflictError extends ApiError {
  constructor(status: number, code: string, message: string, url: string) {
    super(status, code, message, url);
    this.name = "ConflictError";
  }
}
/** 429: too many requests; `retryAfterSeconds` from the `Retry-After` header (undefined if absent). */
export class RateLimitError extends ApiError {
  readonly retryAfterSeconds: number | undefined;
  constructor(code: string, message: string, url: string, retryAfterSeconds: number | undefined) {
    super(429, code, message, url);
    this.name = "RateLimitError";
    this.retryAfterSeconds = retryAfterSeconds;
  }
}
/** 404: no such model or the user has no adapter yet. */
export class NotFoundError extends ApiError {
  constructor(status: number, code: string, message: string, url: string) {
    super(status, code, message, url);
    this.name = "NotFoundError";
  }
}

/** The network failed and no cached copy exists to fall back on. */
export class OfflineError extends ClientError {
  constructor(url: string, options?: { cause?: unknown }) {
    super("offline", `cannot reach ${url} and no cached copy exists`, options);
    this.name = "OfflineError";
  }
}

/** Generation was cancelled through its AbortSignal. */
export class AbortedError extends ClientError {
  constructor(reason?: unknown) {
    super("aborted", `generation aborted${reason === undefined ? "" : `: ${String(reason)}`}`);
    this.name = "AbortedError";
  }
}
