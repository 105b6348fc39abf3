/**
 * The parts of undici the agent uses: `Agent` and `request`. The package's index also loads fetch,
 * WebSocket, EventSource, the mocks and the caches, which cost an idle agent about 4 MB of RSS for
 * nothing (`npm run bench -- --only idle`); these are the same undici modules, loaded one by one.
 */
import type { Dispatcher } from 'undici';
import UndiciAgent from 'undici/lib/dispatcher/agent.js';
import dispatchRequest from 'undici/lib/api/api-request.js';
import { getGlobalDispatcher } from 'undici/lib/global.js';
import { parseURL } from 'undici/lib/core/util.js';

export const Agent = UndiciAgent;
export type Agent = UndiciAgent;
export type { Dispatcher };

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> &
  Partial<Pick<Dispatcher.RequestOptions, 'method'>> & { readonly dispatcher?: Dispatcher };

/** undici's top-level `request(url, options)`: the same checks of the URL, the same default dispatcher. */
export function request(url: string | URL, options: RequestOptions): Promise<Dispatcher.ResponseData> {
  const { dispatcher = getGlobalDispatcher(), ...rest } = options;
  const target = parseURL(url);
  return dispatchRequest.call(dispatcher, {
    ...rest,
    origin: target.origin,
    path: target.search ? `${target.pathname}${target.search}` : target.pathname,
    method: rest.method ?? (rest.body ? 'PUT' : 'GET'),
  });
}
