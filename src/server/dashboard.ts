// The dashboard's pages and its session: GET / (signed in) or the sign-in page, which trades an admin or read-only
// token for an HttpOnly, SameSite=Strict cookie; and GET /healthz for load balancers and compose.
import type { FastifyInstance, FastifyReply } from 'fastify';
import { Type } from '@fastify/type-provider-typebox';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { DASHBOARD_HTML, SIGNIN_HTML } from './assets.generated.ts';
import type { Auth } from './auth.ts';
import type { Database } from './db.ts';
import { ErrorReply, HttpError } from './http.ts';

const CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'";

export function registerDashboard(app: FastifyInstance, auth: Auth, db: Database): void {
  const api = app.withTypeProvider<TypeBoxTypeProvider>();
  const sendPage = (reply: FastifyReply, html: string) => reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).send(html);

  // Signed out, the browser sees the sign-in page only (relative, so a path prefix in front of the server works).
  api.get('/', { schema: { hide: true } }, (request, reply) =>
    auth.session(request) === undefined ? reply.code(303).header('location', 'signin').send() : sendPage(reply, DASHBOARD_HTML),
  );

  api.get('/signin', { schema: { hide: true } }, (_request, reply) => sendPage(reply, SIGNIN_HTML));

  api.post(
    '/session',
    {
      schema: {
        summary: 'Sign the dashboard in: an admin or read-only token becomes an HttpOnly, SameSite=Strict cookie',
        tags: ['dashboard'],
        body: Type.Object({ token: Type.String({ minLength: 1, maxLength: 4096 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ role: Type.Union([Type.Literal('admin'), Type.Literal('read')]) }), 401: ErrorReply, 403: ErrorReply },
      },
    },
    (request, reply) => {
      auth.sameOrigin(request);
      const role = auth.roleOf(request.body.token);
      if (role === undefined) throw new HttpError(401, 'not an admin or read-only token');
      auth.signIn(reply, request.body.token, request.protocol === 'https');
      return { role };
    },
  );

  api.get(
    '/session',
    {
      schema: {
        summary: 'Which role the dashboard’s cookie signs in',
        tags: ['dashboard'],
        response: { 200: Type.Object({ role: Type.Union([Type.Literal('admin'), Type.Literal('read')]) }), 401: ErrorReply },
      },
    },
    (request) => {
      const role = auth.session(request);
      if (role === undefined) throw new HttpError(401, 'not signed in');
      return { role };
    },
  );

  api.delete('/session', { schema: { summary: 'Sign the dashboard out', tags: ['dashboard'], response: { 204: Type.Null() } } }, async (request, reply) => {
    auth.signOut(reply, request.protocol === 'https');
    await reply.code(204).send(null);
  });

  api.get(
    '/healthz',
    {
      schema: {
        summary: 'Liveness for load balancers: the server answers and its database too',
        tags: ['health'],
        response: { 200: Type.Object({ ok: Type.Boolean() }), 503: ErrorReply },
      },
    },
    async (_request, reply) => {
      try {
        await db.get('SELECT 1 AS one');
      } catch (error) {
        return reply.code(503).send({ error: `the database does not answer: ${(error as Error).message}` });
      }
      return { ok: true };
    },
  );
}
