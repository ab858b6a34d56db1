/** The element with `id`; a missing one is a page bug, reported with its id. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (el === null) throw new Error(`page element #${id} is missing`);
  return el as T;
}

/** Shows a verdict line: ok (green), failed (red) or pending (grey). */
export function showVerdict(el: HTMLElement, ok: boolean | "pending", text: string): void {
  el.hidden = false;
  el.dataset.ok = String(ok);
  el.textContent = text;
}

/** Runs `handler` on the form's submit instead of the browser's navigation. */
export function onSubmit(formId: string, handler: () => void | Promise<void>): void {
  byId(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    void handler();
  });
}

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A failure as "status code: message" when it came from the API, else its message. */
export function describe(error: unknown): string {
  if (!(error instanceof Error)) return String(error);
  const e = error as Error & { status?: number; code?: string };
  if (e.status === undefined || e.code === undefined) return e.message;
  // The client's message is "status code: message (url)"; the format's own messages may repeat the code.
  const short = e.code.split(".").pop() ?? e.code;
  const message = e.message
    .replace(/^\d+ [^:]+: /, "")
    .replace(/ \(https?:[^)]*\)$/, "")
    .replace(new RegExp(`^${short}: `), "");
  return `${e.status} ${e.code}: ${message}`;
}
