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

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KB`;
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`;
}

/** A failure as "status code: message" when it came from the API, else its message. */
export function describe(error: unknown): string {
  if (error instanceof Error) {
    const e = error as Error & { status?: number; code?: string };
    return e.status !== undefined && e.code !== undefined
      ? `${e.status} ${e.code}: ${e.message.replace(/^\d+ [^:]+: /, "").replace(/ \(https?:[^)]*\)$/, "")}`
      : e.message;
  }
  return String(error);
}
