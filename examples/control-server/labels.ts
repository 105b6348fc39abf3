/**
 * Parses `x-foreman-labels`: `k=v` pairs joined by `,`, each key and value URL-encoded.
 * Returns an error message instead of throwing, because the header comes from the network.
 */
export function parseLabelsHeader(header: string | undefined): { labels: Record<string, string> } | { error: string } {
  // No prototype, so a label named "__proto__" is just a label.
  const labels = Object.create(null) as Record<string, string>;
  if (header === undefined) return { labels };
  for (const rawPair of header.split(',')) {
    const pair = rawPair.trim();
    // Tolerate a trailing or doubled comma; it carries no label.
    if (pair === '') continue;
    const parts = pair.split('=');
    if (parts.length !== 2) return { error: `x-foreman-labels: "${pair}" is not one key=value pair (encode "=" and "," in keys and values)` };
    const [rawKey, rawValue] = parts as [string, string];
    let key: string;
    let value: string;
    try {
      key = decodeURIComponent(rawKey);
      value = decodeURIComponent(rawValue);
    } catch {
      return { error: `x-foreman-labels: "${pair}" is not valid URL encoding` };
    }
    if (key === '') return { error: `x-foreman-labels: "${pair}" has an empty key` };
    labels[key] = value;
  }
  return { labels };
}

/** The inverse of parseLabelsHeader, for clients and tests. */
export function formatLabelsHeader(labels: Record<string, string>): string {
  return Object.entries(labels)
    .map(([key, value]) => `${encodeURIComponent(key)}=${encodeURIComponent(value)}`)
    .join(',');
}
