/**
 * Turns a growing list of token ids into text deltas: holds back an unfinished UTF-8 character
 * (decoded as U+FFFD) and the tail that could still become a stop string, and ends at the
 * first stop string.
 */
export class TextStream {
  private emitted = 0;
  private readonly stops: readonly string[];
  private readonly hold: number;
  done = false;

  constructor(stops: readonly string[] = []) {
    this.stops = stops.filter((s) => s.length > 0);
    this.hold = Math.max(0, ...this.stops.map((s) => s.length - 1));
  }

  /** The new text given the whole decoded text so far; `final` flushes what was held back. */
  push(full: string, final = false): string {
    if (this.done) return "";
    let end = final ? full.length : full.length - this.hold;
    if (!final && full.endsWith("\uFFFD")) end = Math.min(end, full.length - 1);
    let stopAt = -1;
    for (const s of this.stops) {
      const i = full.indexOf(s, Math.max(0, this.emitted - this.hold));
      if (i >= 0 && (stopAt < 0 || i < stopAt)) stopAt = i;
    }
    if (stopAt >= 0) {
      this.done = true;
      end = stopAt;
    }
    if (end <= this.emitted) return "";
    const delta = full.slice(this.emitted, end);
    this.emitted = end;
    return delta;
  }
}
