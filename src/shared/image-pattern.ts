/**
 * `docker.allowed_images`: glob patterns an image reference must match.
 *
 * A pattern matches a whole reference. `*` matches any run of characters except `/` (so within one path
 * part, tag and digest included), `**` any run including `/`; every other character matches itself,
 * case-sensitively. A reference is allowed when a pattern matches it as the job wrote it, its full form
 * (registry, `library/` for Docker Hub's official images, and `:latest` when it names no tag or digest:
 * `node` is `docker.io/library/node:latest`), or its short form (the full one without `docker.io/` and
 * `library/`: `node:latest`). So `node:*` and `docker.io/library/*` both allow `node` and
 * `docker.io/library/node:20`: a job cannot slip past a pattern by writing the same image another way.
 */

/** The regular expression a pattern stands for. */
export function imagePatternRegExp(pattern: string): RegExp {
  let source = '';
  for (let i = 0; i < pattern.length; i++) {
    const char = pattern[i] ?? '';
    if (char !== '*') {
      source += char.replace(/[.+?^${}()|[\]\\/]/g, '\\$&');
    } else if (pattern[i + 1] === '*') {
      source += '.*';
      i++;
    } else {
      source += '[^/]*';
    }
  }
  return new RegExp(`^${source}$`);
}

/** Docker's own rule: a first part is a registry when it has a `.` or a `:`, or is `localhost`. */
function isRegistry(part: string): boolean {
  return part.includes('.') || part.includes(':') || part === 'localhost';
}

/** The reference with its registry, `library/` and `:latest` spelled out, as the engine resolves it. */
export function fullImageReference(reference: string): string {
  const slash = reference.indexOf('/');
  const first = slash < 0 ? '' : reference.slice(0, slash);
  let registry = 'docker.io';
  let rest = reference;
  if (slash >= 0 && isRegistry(first)) {
    registry = first === 'index.docker.io' ? 'docker.io' : first;
    rest = reference.slice(slash + 1);
  }
  if (registry === 'docker.io' && !rest.includes('/')) rest = `library/${rest}`;
  const lastPart = rest.slice(rest.lastIndexOf('/') + 1);
  return `${registry}/${rest}${lastPart.includes(':') || lastPart.includes('@') ? '' : ':latest'}`;
}

/** The full form as Docker shows it: Docker Hub's registry and `library/` left out. */
function shortForm(full: string): string {
  const hub = full.startsWith('docker.io/') ? full.slice('docker.io/'.length) : full;
  return /^library\/[^/]+$/.test(hub) ? hub.slice('library/'.length) : hub;
}

/** Decides whether an image is allowed; with no patterns every image is. */
export function imageMatcher(patterns: readonly string[]): (reference: string) => boolean {
  if (patterns.length === 0) return () => true;
  const compiled = patterns.map(imagePatternRegExp);
  return (reference) => {
    const full = fullImageReference(reference);
    const forms = [reference, full, shortForm(full)];
    return compiled.some((re) => forms.some((form) => re.test(form)));
  };
}
