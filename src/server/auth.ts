// Who may do what on the control server: agents with their bearer tokens (the poll), operators with admin tokens
// (everything) or read-only tokens (see, not submit or cancel), as a bearer token or, for the dashboard, in an
// HttpOnly SameSite=Strict cookie. A request that changes something and is signed in by the cookie must also come
// from the dashboard's own page: its Origin (when sent) is this server's, and it carries a header no cross-site
// form or simple request can set.
import type { FastifyReply, FastifyRequest } from 'fastify';
import { bearerToken } from '../../packages/control-server-kit/index.ts';
import { HttpError, header } from './http.ts';
import { TokenSet } from './secrets.ts';

export type Role = 'admin' | 'read';

export const SESSION_COOKIE = 'foreman_session';
/** The header the dashboard sends on every request that changes something. */
export const CSRF_HEADER = 'x-requested-with';
export const CSRF_VALUE = 'foreman-dashboard';
const SESSION_DAYS = 7;

export interface Auth {
  /** Throws a 401 unless the request carries an agent token. */
  agent(request: FastifyRequest): string;
  /** Throws 401 (no or unknown credentials) or 403 (read-only for a change, or a cross-site request) unless allowed. */
  operator(request: FastifyRequest, need: Role): Role;
  /** The role the dashboard cookie signs in, if any (no CSRF check: for reads and pages). */
  session(request: FastifyRequest): Role | undefined;
  /** The role a token gives an operator; undefined for an agent token or an unknown one. */
  roleOf(token: string | undefined): Role | undefined;
  signIn(reply: FastifyReply, token: string, secure: boolean): void;
  signOut(reply: FastifyReply, secure: boolean): void;
  /** Throws a 403 unless the request comes from this server's own pages (for the sign-in itself). */
  sameOrigin(request: FastifyRequest): void;
}

export function createAuth(tokens: { agent: readonly string[]; admin: readonly string[]; readOnly: readonly string[] }): Auth {
  const agents = new TokenSet(tokens.agent);
  const admins = new TokenSet(tokens.admin);
  const readers = new TokenSet(tokens.readOnly);
  const roleOf = (token: string | undefined): Role | undefined => (admins.has(token) ? 'admin' : readers.has(token) ? 'read' : undefined);
  const cookieToken = (request: FastifyRequest): string | undefined => {
    for (const part of (header(request, 'cookie') ?? '').split(';')) {
      const [name, ...rest] = part.trim().split('=');
      if (name !== SESSION_COOKIE) continue;
      try {
        return decodeURIComponent(rest.join('=')) || undefined;
      } catch {
        return undefined;
      }
    }
    return undefined;
  };
  const sameOrigin = (request: FastifyRequest): void => {
    const origin = header(request, 'origin');
    if (origin !== undefined && origin !== 'null') {
      let host: string | undefined;
      try {
        host = new URL(origin).host;
      } catch {
        host = undefined;
      }
      if (host !== request.host) throw new HttpError(403, `cross-site request refused (Origin ${origin})`);
    } else if (header(request, 'sec-fetch-site') === 'cross-site') {
      throw new HttpError(403, 'cross-site request refused');
    }
  };
  const cookie = (value: string, maxAge: number, secure: boolean) =>
    `${SESSION_COOKIE}=${encodeURIComponent(value)}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure ? '; Secure' : ''}`;

  return {
    agent(request) {
      const token = bearerToken(request.headers);
      if (!agents.has(token)) throw new HttpError(401, 'missing or invalid bearer token');
      return token!;
    },
    operator(request, need) {
      const bearer = bearerToken(request.headers);
      let role: Role | undefined;
      if (bearer !== undefined) {
        role = roleOf(bearer);
        if (role === undefined) throw new HttpError(401, 'invalid token: send an admin or read-only token (Authorization: Bearer …)');
      } else {
        role = roleOf(cookieToken(request));
        if (role === undefined) throw new HttpError(401, 'sign in first: send an admin or read-only token (Authorization: Bearer …)');
        if (request.method !== 'GET' && request.method !== 'HEAD') {
          // The cookie is sent by the browser on its own: make sure the dashboard's page sent this request.
          sameOrigin(request);
          if (header(request, CSRF_HEADER) !== CSRF_VALUE) throw new HttpError(403, `cross-site request refused: send ${CSRF_HEADER}: ${CSRF_VALUE}`);
        }
      }
      if (need === 'admin' && role !== 'admin') throw new HttpError(403, 'this token may read, not submit or cancel: use an admin token');
      return role;
    },
    session: (request) => roleOf(cookieToken(request)),
    roleOf,
    signIn(reply, token, secure) {
      void reply.header('set-cookie', cookie(token, SESSION_DAYS * 86_400, secure));
    },
    signOut(reply, secure) {
      void reply.header('set-cookie', cookie('', 0, secure));
    },
    sameOrigin,
  };
}
