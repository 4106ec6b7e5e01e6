/**
 * Resumable CDN uploads (core/net/cdn-upload.ts) against test-side CDNs that cut the first try
 * midway: a tus 1.0.0 server that speaks HTTP/2 and HTTP/1.1 (TLS, the mock's certificate, as the
 * mock's CDN 3 is; uploads go over HTTP/1.1) and a Google-style resumable server over HTTPS/1.1
 * (CDN 2). The mock's own tus server cannot be cut,
 * and its CDN 2 does not exist (NEXT-WAVE.md §5).
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import https from 'node:https';
import type http from 'node:http';
import { Readable } from 'node:stream';
import { ServerError, TimeoutError } from '../../../core/errors';
import { uploadToCdn, type UploadForm } from '../../../core/net/cdn-upload';
import { httpsSend } from '../../../core/net/upload';
import { envFor, tls, tusServer, type Seen } from './fake-cdn';

function source(bytes: Buffer) {
  return {
    size: bytes.length,
    open: (start: number) =>
      Readable.from(
        (function* () {
          for (let i = start; i < bytes.length; i += 16 * 1024)
            yield bytes.subarray(i, i + 16 * 1024);
        })(),
      ),
  };
}

/** A Google-style resumable server over HTTPS/1.1 that cuts the first `cuts` PUTs at `cutAt`. */
async function gcsServer(opts: { cutAt: number; cuts: number }) {
  let stored = Buffer.alloc(0);
  let total = -1;
  const seen: Seen[] = [];
  const putRanges: string[] = [];
  let cuts = opts.cuts;
  const server = https.createServer(tls, (req: http.IncomingMessage, res: http.ServerResponse) => {
    seen.push({ method: req.method ?? '', path: req.url ?? '', headers: req.headers });
    if (req.method === 'POST' && req.url === '/gcs/form') {
      res.writeHead(201, { location: `https://127.0.0.1:${port}/gcs/session/1` });
      return res.end();
    }
    const range = String(req.headers['content-range'] ?? '');
    const probe = /^bytes \*\/(\d+)$/.exec(range);
    if (probe) {
      total = Number(probe[1]);
      if (stored.length === total) res.writeHead(200);
      else res.writeHead(308, stored.length ? { range: `bytes=0-${stored.length - 1}` } : {});
      return res.end();
    }
    putRanges.push(range);
    const start = /^bytes (\d+)-/.exec(range)?.[1];
    if (Number(start ?? 0) !== stored.length) {
      res.writeHead(400);
      return res.end();
    }
    total = Number(req.headers['content-length']) + stored.length;
    const cutting = cuts > 0;
    if (cutting) cuts--;
    req.on('data', (c: Buffer) => {
      if (cutting && stored.length + c.length >= opts.cutAt) {
        stored = Buffer.concat([stored, c.subarray(0, opts.cutAt - stored.length)]);
        req.socket.destroy();
        return;
      }
      stored = Buffer.concat([stored, c]);
    });
    req.on('end', () => {
      res.writeHead(stored.length === total ? 200 : 308);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    get stored() {
      return stored;
    },
    seen,
    putRanges,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

const fast = { retryDelayMs: 1, timeoutMs: 10_000 };

describe('core/net/cdn-upload', () => {
  it('tus (CDN 3; HTTP/1.1 to a server that also speaks HTTP/2): a cut first upload resumes with HEAD then PATCH from the server’s offset, bytes equal', async () => {
    const cdn = await tusServer({ cutAt: 300_000, cuts: 1 });
    try {
      const bytes = crypto.randomBytes(1_000_000);
      const form: UploadForm = {
        cdn: 3,
        key: 'abcKEY_1',
        headers: { 'x-signed': 'sig' },
        signedUploadLocation: `https://127.0.0.1:${cdn.port}/tus/files`,
      };
      const resumes: number[] = [];
      await uploadToCdn(envFor(cdn.port), form, source(bytes), {
        ...fast,
        onResume: (o) => resumes.push(o),
      });
      assert.deepEqual(
        cdn.seen.map((s) => `${s.method} ${s.path}`),
        ['POST /tus/files', 'HEAD /tus/files/abcKEY_1', 'PATCH /tus/files/abcKEY_1'],
      );
      const offset = cdn.patchOffsets[0]!;
      assert.ok(offset > 0 && offset <= 300_000, `resumed at ${offset}`);
      assert.deepEqual(resumes, [offset]);
      const post = cdn.seen[0]!.headers;
      assert.equal(post['tus-resumable'], '1.0.0');
      assert.equal(post['upload-length'], String(bytes.length));
      assert.equal(
        post['upload-metadata'],
        `filename ${Buffer.from('abcKEY_1').toString('base64')}`,
      );
      assert.equal(post['content-type'], 'application/offset+octet-stream');
      for (const s of cdn.seen) assert.equal(s.headers['x-signed'], 'sig', 'form headers on each');
      assert.equal(cdn.seen[2]!.headers['content-length'], String(bytes.length - offset));
      assert.ok(cdn.stored.get('abcKEY_1')!.equals(bytes), 'the CDN holds the very bytes');
      assert.deepEqual([...cdn.versions], ['1.1'], 'uploads go over HTTP/1.1');
    } finally {
      await cdn.close();
    }
  });

  it('tus: gives up after its retries when every try is cut; an answered error is final', async () => {
    const cdn = await tusServer({ cutAt: 1000, cuts: 100 });
    const form = (port: number): UploadForm => ({
      cdn: 3,
      key: 'k',
      headers: {},
      signedUploadLocation: `https://127.0.0.1:${port}/tus/files`,
    });
    try {
      await assert.rejects(
        uploadToCdn(envFor(cdn.port), form(cdn.port), source(crypto.randomBytes(50_000)), {
          ...fast,
          retries: 2,
        }),
        /dropped 3 times/,
      );
      assert.equal(cdn.seen.filter((s) => s.method === 'PATCH').length, 2);
    } finally {
      await cdn.close();
    }
    const refusing = await tusServer({ cutAt: 0, cuts: 0, status: 413 });
    try {
      await assert.rejects(
        uploadToCdn(envFor(refusing.port), form(refusing.port), source(Buffer.alloc(10)), fast),
        (e: unknown) => e instanceof ServerError && /413/.test(e.message),
      );
      assert.equal(refusing.seen.length, 1, 'no retry of an answer');
    } finally {
      await refusing.close();
    }
  });

  it('a CDN that takes the body but never answers fails the request with a TimeoutError (idle timeout)', async () => {
    const server = https.createServer(tls, (req) => void req.resume());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      await assert.rejects(
        httpsSend(envFor(port), {
          method: 'POST',
          url: `https://127.0.0.1:${port}/x`,
          headers: {},
          body: Readable.from([Buffer.alloc(1000)]),
          timeoutMs: 200,
        }),
        (e: unknown) => e instanceof TimeoutError,
      );
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('CDN 2 (GCS resumable, HTTPS/1.1): a cut PUT is probed with bytes */total and resumed from Range, bytes equal', async () => {
    const cdn = await gcsServer({ cutAt: 400_000, cuts: 1 });
    try {
      const bytes = crypto.randomBytes(900_000);
      await uploadToCdn(
        envFor(cdn.port),
        {
          cdn: 2,
          key: 'gkey',
          headers: { 'x-goog-resumable': 'start' },
          signedUploadLocation: `https://127.0.0.1:${cdn.port}/gcs/form`,
        },
        source(bytes),
        fast,
      );
      assert.deepEqual(
        cdn.seen.map((s) => `${s.method} ${s.path} ${s.headers['content-range'] ?? ''}`.trim()),
        [
          'POST /gcs/form',
          'PUT /gcs/session/1',
          `PUT /gcs/session/1 bytes */${bytes.length}`,
          `PUT /gcs/session/1 bytes ${cdn.putRanges[1]!.slice(6)}`,
        ],
      );
      assert.equal(cdn.seen[0]!.headers['x-goog-resumable'], 'start');
      const resumed = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(cdn.putRanges[1]!);
      assert.ok(resumed, cdn.putRanges[1]);
      assert.ok(Number(resumed[1]) > 0 && Number(resumed[1]) <= 400_000);
      assert.equal(Number(resumed[2]), bytes.length - 1);
      assert.ok(cdn.stored.equals(bytes), 'the CDN holds the very bytes');
    } finally {
      await cdn.close();
    }
  });
});
