import {
  ApiError,
  AuthError,
  ConflictError,
  NotFoundError,
  RateLimitError,
  ValidationError,
} from "../errors.ts";

/** Turn an API error response (`{"error": {"code", "message"}}`) into the matching typed error. */
export async function apiError(response: Response, url: string): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not JSON (a proxy's page): keep the status-derived code.
  }
  const status = response.status;
  if (status === 401 || status === 403) return new AuthError(status, code, message, url);
  if (status === 404) return new NotFoundError(status, code, message, url);
  if (status === 412) return new ConflictError(status, code, message, url);
  if (status === 422 || status === 400 || status === 413)
    return new ValidationError(status, code, message, url);
  if (status === 429) {
    const header = response.headers.get("retry-after");
    const seconds = header === null ? undefined : Number(header);
    return new RateLimitError(
      code,
      message,
      url,
      seconds !== undefined && Number.isFinite(seconds) ? seconds : undefined,
    );
  }
  return new ApiError(status, code, message, url);
}
