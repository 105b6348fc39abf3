// The config's own string formats, which the generated validator calls (config-validator.generated.ts).

export function isDockerUrl(value: string): boolean {
  try {
    const url = new URL(value);
    if (url.protocol === 'unix:') return url.pathname.length > 1;
    return ['tcp:', 'http:', 'https:'].includes(url.protocol) && url.hostname !== '';
  } catch {
    return false;
  }
}

export function isHostPortOrEmpty(value: string): boolean {
  if (value === '') return true;
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^\s:/[\]]+):(\d{1,5})$/.exec(value);
  return match !== null && Number(match[2]) <= 65535;
}
