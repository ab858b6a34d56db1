import {
  ApiError,
  AuthError,
  ConflictError,
  NotFoundError,
  RateLimitError,
  ValidationError,
} from "../errors.ts";

/**
 * Turns an API error response (`{"error": {"code", "message"}}`, `X-Request-Id`) into the
 * matching ApiError. A body that is not JSON (a proxy's page) keeps a status-derived code.
 */
export async function apiError(response: Response, url: string): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = response.statusText || "request failed";
  const text = await response.text().catch(() => "");
  try {
    const body = JSON.parse(text) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    if (text.trim() !== "") message = text.slice(0, 300);
  }
  const status = response.status;
  const requestId = response.headers.get("x-request-id") ?? undefined;
  const details = { requestId };
  if (status === 401 || status === 403) return new AuthError(status, code, message, url, details);
  if (status === 404) return new NotFoundError(status, code, message, url, details);
  if (status === 412) return new ConflictError(status, code, message, url, details);
  if (status === 422 || status === 400 || status === 413)
    return new ValidationError(status, code, message, url, details);
  if (status === 429) {
    const header = response.headers.get("retry-after");
    const seconds = header === null ? undefined : Number(header);
    return new RateLimitError(
      code,
      message,
      url,
      seconds !== undefined && Number.isFinite(seconds) ? seconds : undefined,
      details,
    );
  }
  return new ApiError(status, code, message, url, details);
}
