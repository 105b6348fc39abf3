/** docker-modem's internal request module (untyped): its redirect limit is read on every request. */
declare module 'docker-modem/lib/http.js' {
  const http: { maxRedirects: number };
  export default http;
}
