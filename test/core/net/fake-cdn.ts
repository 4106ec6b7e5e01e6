/**
 * Test-side CDNs for uploads: the mock's certificate and CA (valid for 127.0.0.1), and a tus 1.0.0
 * server that speaks HTTP/2 and HTTP/1.1 (as the mock's CDN 3 does) and can cut uploads midway.
 */
import fs from 'node:fs';
import http2 from 'node:http2';
import path from 'node:path';
import { resolveEnvironment, type Environment } from '../../../core/config';

const certDir = path.join(
  path.dirname(require.resolve('@signalapp/mock-server/package.json')),
  'certs',
);
export const tls = {
  cert: fs.readFileSync(path.join(certDir, 'cert.pem')),
  key: fs.readFileSync(path.join(certDir, 'key.pem')),
};

export function envFor(port: number): Environment {
  return resolveEnvironment({
    server: 'custom',
    serviceUrl: `https://127.0.0.1:${port}`,
    caCert: fs.readFileSync(path.join(certDir, 'ca-cert.pem'), 'utf8'),
    trustRoots: ['BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF'],
    transport: 'http1',
  });
}

export interface Seen {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

/**
 * A tus server, as the mock's CDN is an HTTP/2 server that also takes HTTP/1.1 (`allowHTTP1`),
 * that cuts the first `cuts` uploads after `cutAt` bytes (or answers every request `status`).
 */
export async function tusServer(opts: { cutAt: number; cuts: number; status?: number }) {
  const stored = new Map<string, Buffer>();
  const seen: Seen[] = [];
  const patchOffsets: number[] = [];
  const versions = new Set<string>();
  let cuts = opts.cuts;
  const server = http2.createSecureServer({ ...tls, allowHTTP1: true }, (req, res) => {
    const method = req.method;
    const p = req.url;
    versions.add(req.httpVersion);
    seen.push({ method, path: p, headers: req.headers });
    const key = decodeURIComponent(p.replace(/^\/tus\/files\/?/, ''));
    if (opts.status) {
      res.writeHead(opts.status);
      return void res.end();
    }
    if (method === 'HEAD') {
      const have = stored.get(key);
      res.writeHead(have ? 200 : 404, { 'upload-offset': String(have?.length ?? 0) });
      return void res.end();
    }
    let id = key;
    if (method === 'POST') {
      const meta = String(req.headers['upload-metadata'] ?? '');
      id = Buffer.from(meta.replace(/^filename /, ''), 'base64').toString();
      stored.set(id, Buffer.alloc(0));
    } else {
      patchOffsets.push(Number(req.headers['upload-offset']));
      if (Number(req.headers['upload-offset']) !== stored.get(id)?.length) {
        res.writeHead(409);
        return void res.end();
      }
    }
    const cutting = cuts > 0;
    if (cutting) cuts--;
    let cut = false;
    req.on('data', (c: Buffer) => {
      if (cut) return;
      const have = stored.get(id) ?? Buffer.alloc(0);
      if (cutting && have.length + c.length >= opts.cutAt) {
        stored.set(id, Buffer.concat([have, c.subarray(0, opts.cutAt - have.length)]));
        cut = true;
        req.socket.destroy();
        return;
      }
      stored.set(id, Buffer.concat([have, c]));
    });
    req.on('end', () => {
      if (cut) return;
      res.writeHead(method === 'POST' ? 201 : 204, {
        'upload-offset': String(stored.get(id)?.length ?? 0),
      });
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    stored,
    seen,
    patchOffsets,
    versions,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
