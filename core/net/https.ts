/**
 * HTTPS GET for CDN downloads (attachments: the contacts blob, §7), verified against the
 * environment's CA. Speaks HTTP/2 when the server offers it by ALPN (Signal's mock server is HTTP/2
 * only), else HTTP/1.1. Bounded in size and time.
 */
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Environment } from '../config';
import { NetworkError, ServerError, TimeoutError } from '../errors';

export interface GetOptions {
  timeoutMs?: number;
  maxBytes?: number;
}

function alpn(url: URL, ca: string, timeoutMs: number): Promise<string | false> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: url.hostname,
      port: Number(url.port || 443),
      ca,
      servername: net.isIP(url.hostname) ? undefined : url.hostname,
      ALPNProtocols: ['h2', 'http/1.1'],
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new TimeoutError(`Reaching ${url.origin}`, timeoutMs));
    }, timeoutMs);
    socket.once('secureConnect', () => {
      clearTimeout(timer);
      const proto = socket.alpnProtocol;
      socket.end();
      resolve(proto ?? false);
    });
    socket.once('error', (e) => {
      clearTimeout(timer);
      reject(new NetworkError(`Cannot reach ${url.origin}: ${e.message}`, { cause: e }));
    });
  });
}

export async function httpsGet(
  env: Environment,
  target: string,
  opts: GetOptions = {},
): Promise<Uint8Array> {
  const url = new URL(target);
  if (url.protocol !== 'https:')
    throw new NetworkError(`Refusing a non-https download: ${url.origin}`);
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxBytes = opts.maxBytes ?? 100 * 1024 * 1024;
  const what = `Downloading from ${url.host}`;
  const proto = await alpn(url, env.caCert, timeoutMs);
  return new Promise<Uint8Array>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let cleanup = () => {};
    const timer = setTimeout(() => {
      cleanup();
      reject(new TimeoutError(what, timeoutMs));
    }, timeoutMs);
    const finish = (err: Error | null, status?: number) => {
      clearTimeout(timer);
      cleanup();
      if (err) return reject(err);
      if (status !== 200) return reject(new ServerError(status ?? 0, what));
      resolve(new Uint8Array(Buffer.concat(chunks)));
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) finish(new NetworkError(`${what}: larger than ${maxBytes} bytes`));
      else chunks.push(chunk);
    };
    if (proto === 'h2') {
      const session = http2.connect(url.origin, { ca: env.caCert });
      cleanup = () => session.close();
      session.once('error', (e) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e })));
      const req = session.request({
        ':method': 'GET',
        ':path': url.pathname + url.search,
        'user-agent': env.userAgent,
      });
      let status = 0;
      req.once('response', (h) => (status = Number(h[':status'])));
      req.on('data', onData);
      req.once('end', () => finish(null, status));
      req.once('error', (e) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e })));
      req.end();
    } else {
      const req = https.get(
        url,
        { ca: env.caCert, headers: { 'user-agent': env.userAgent } },
        (res) => {
          res.on('data', onData);
          res.once('end', () => finish(null, res.statusCode));
          res.once('error', (e) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e })));
        },
      );
      cleanup = () => req.destroy();
      req.once('error', (e) => finish(new NetworkError(`${what}: ${e.message}`, { cause: e })));
    }
  });
}
