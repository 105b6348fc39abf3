/**
 * A configuration problem the user has to fix. The message is one line that
 * names where the value came from (file or env variable), the key, the value
 * and what was expected; the CLI prints it as-is and exits 2.
 */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  /** Each problem found, when there were several; `message` joins them. */
  readonly problems: readonly string[];
  /**
   * The warnings gathered before the problems were found (an unknown key or FOREMAN_* variable, with its
   * did-you-mean): a misspelled name is often why a value is missing, so they are shown with the problems.
   */
  readonly warnings: readonly string[];

  constructor(problems: string | readonly string[], warnings: readonly string[] = []) {
    const list = typeof problems === 'string' ? [problems] : problems;
    super(list.join('; '));
    this.problems = list;
    this.warnings = warnings;
  }
}
