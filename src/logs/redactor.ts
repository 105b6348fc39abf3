import { escapeRegExp, REDACTED } from '../shared/redact.ts';

export { REDACTED };

/** The shortest piece of a secret cut by a line split that is still hidden. */
const MIN_FRAGMENT = 4;

/**
 * Hides given values (`[core.env]`'s, the job's own secret) in log text. A line the engine split
 * (past 16 KiB) may cut a value in two: the end of a piece that begins a value, and the start of
 * the next piece that ends one, are hidden too (at least 4 characters of it), which may hide a
 * little more than needed but never less.
 */
export class Redactor {
  private values: readonly string[] = [];
  private pattern: RegExp | undefined;

  constructor(values: Iterable<string>) {
    this.add(values);
  }

  /** Hides these too, from the next text on (a job's redactions, added while it runs). */
  add(values: Iterable<string>): void {
    // Longest first, so a value that contains another is hidden whole.
    this.values = [...new Set([...this.values, ...values].filter((v) => v.length > 0))].sort((a, b) => b.length - a.length);
    this.pattern = this.values.length > 0 ? new RegExp(this.values.map(escapeRegExp).join('|'), 'g') : undefined;
  }

  get empty(): boolean {
    return this.pattern === undefined;
  }

  /** `continues`: the text goes on the piece after this one; `continued`: it carries on from the piece before. */
  redact(text: string, options: { continues?: boolean; continued?: boolean } = {}): string {
    if (!this.pattern) return text;
    let out = text.replace(this.pattern, REDACTED);
    if (options.continues) out = this.hideTail(out);
    if (options.continued) out = this.hideHead(out);
    return out;
  }

  private hideTail(text: string): string {
    for (const value of this.values) {
      for (let n = Math.min(value.length - 1, text.length); n >= Math.min(MIN_FRAGMENT, value.length - 1) && n > 0; n--) {
        if (text.endsWith(value.slice(0, n))) return text.slice(0, text.length - n) + REDACTED;
      }
    }
    return text;
  }

  private hideHead(text: string): string {
    for (const value of this.values) {
      for (let n = Math.min(value.length - 1, text.length); n >= Math.min(MIN_FRAGMENT, value.length - 1) && n > 0; n--) {
        if (text.startsWith(value.slice(value.length - n))) return REDACTED + text.slice(n);
      }
    }
    return text;
  }
}
