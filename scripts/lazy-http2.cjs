// Stands in for node:http2 where fastify's server and undici's HTTP/2 client load it at start:
// foreman enables neither (no HTTP/2 job API, no allowH2), and loading node:http2 costs an idle
// agent about 2 MB of RSS. The constants are the ones those modules read when they load (RFC 9113
// pseudo-headers, nghttp2 error codes; test/bundle.test.ts compares them with node:http2's);
// everything else loads the real module on first use.
const real = () => require('node:http2');
module.exports = {
  constants: {
    HTTP2_HEADER_AUTHORITY: ':authority',
    HTTP2_HEADER_METHOD: ':method',
    HTTP2_HEADER_PATH: ':path',
    HTTP2_HEADER_SCHEME: ':scheme',
    HTTP2_HEADER_CONTENT_LENGTH: 'content-length',
    HTTP2_HEADER_EXPECT: 'expect',
    HTTP2_HEADER_STATUS: ':status',
    HTTP2_HEADER_PROTOCOL: ':protocol',
    NGHTTP2_REFUSED_STREAM: 7,
    NGHTTP2_CANCEL: 8,
  },
  connect: (...args) => real().connect(...args),
  createServer: (...args) => real().createServer(...args),
  createSecureServer: (...args) => real().createSecureServer(...args),
};
