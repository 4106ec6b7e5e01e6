/**
 * A small local chat server for transport tests: HTTPS + `ws` (HTTP/1.1 upgrade) speaking
 * WebSocketMessage, with knobs for the faults the tests need (silence, drops, refusals).
 * It uses the mock server's test certificate (valid for 127.0.0.1) and its CA.
 */
import fs from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import type net from 'node:net';
import path from 'node:path';
import type stream from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { WebSocketMessage, toDecimalString, Long } from '../../../proto';
import { resolveEnvironment, type Environment } from '../../../core/config';

const certDir = path.join(
  path.dirname(require.resolve('@signalapp/mock-server/package.json')),
  'certs',
);

export interface FakeChatServer {
  env: Environment;
  port: number;
  /** Upgrade attempts seen (including refused ones). */
  upgrades: number;
  sockets: WebSocket[];
  /** Requests our client made on the socket, as `VERB path`. */
  requests: string[];
  /** When true, keepalive requests get no answer. */
  silent: boolean;
  /** When set, upgrades are refused with this HTTP status. */
  refuseWith: number | null;
  /** When true, upgrade requests are never answered (the client's connect must be abortable). */
  hangUpgrades: boolean;
  /** Push a server request to the newest socket; resolves with the client's status. */
  push(verb: string, pathName: string, body?: Uint8Array): Promise<number>;
  dropAll(code?: number): void;
  close(): Promise<void>;
}

export interface FakeServerOptions {
  /**
   * Serve through an HTTP/2 server that also takes HTTP/1.1 (ALPN offers h2) but does not enable
   * extended CONNECT: WebSocket works only by HTTP/1.1 upgrade, like many HTTP/2 front ends.
   */
  http2Front?: boolean;
}

/** Plain HTTPS routes (HTTP/1.1): `GET /bytes/<n>` answers n bytes; `GET /hang` never answers. */
function onHttpRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
  const m = /^\/bytes\/(\d+)$/.exec(req.url ?? '');
  if (m) {
    const n = Number(m[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    res.end(Buffer.alloc(n, 7));
    return;
  }
  if (req.url === '/hang') return;
  res.writeHead(404);
  res.end();
}

export async function startFakeChatServer(opts: FakeServerOptions = {}): Promise<FakeChatServer> {
  const tlsOptions = {
    cert: fs.readFileSync(path.join(certDir, 'cert.pem')),
    key: fs.readFileSync(path.join(certDir, 'key.pem')),
  };
  const server: https.Server | http2.Http2SecureServer = opts.http2Front
    ? http2.createSecureServer({ ...tlsOptions, allowHTTP1: true })
    : https.createServer(tlsOptions, onHttpRequest);
  const openSockets = new Set<net.Socket>();
  server.on('secureConnection', (socket: net.Socket) => {
    openSockets.add(socket);
    socket.once('close', () => openSockets.delete(socket));
  });
  const wss = new WebSocketServer({ noServer: true });
  let nextId = 1;
  const waiting = new Map<string, (status: number) => void>();
  const fake: FakeChatServer = {
    env: undefined as unknown as Environment,
    port: 0,
    upgrades: 0,
    sockets: [],
    requests: [],
    silent: false,
    refuseWith: null,
    hangUpgrades: false,
    push: (verb, pathName, body) =>
      new Promise<number>((resolve) => {
        const ws = fake.sockets[fake.sockets.length - 1];
        if (!ws) throw new Error('no client connected');
        const id = nextId++;
        waiting.set(String(id), resolve);
        ws.send(
          WebSocketMessage.encode({
            type: WebSocketMessage.Type.REQUEST,
            request: {
              verb,
              path: pathName,
              id: Long.fromNumber(id, true),
              ...(body ? { body } : {}),
            },
          }).finish(),
        );
      }),
    dropAll: (code = 1011) => {
      for (const ws of fake.sockets) ws.close(code, 'dropped');
    },
    close: async () => {
      for (const ws of fake.sockets) ws.terminate();
      wss.close();
      // A hanging download or an idle HTTP/2 session would keep server.close() waiting.
      for (const socket of openSockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('upgrade', (req: http.IncomingMessage, socket: stream.Duplex, head: Buffer) => {
    fake.upgrades++;
    if (fake.hangUpgrades) return;
    if (fake.refuseWith) {
      socket.end(`HTTP/1.1 ${fake.refuseWith} Forbidden\r\nContent-Length: 0\r\n\r\n`);
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => {
      fake.sockets.push(ws);
      ws.on('close', () => (fake.sockets = fake.sockets.filter((s) => s !== ws)));
      ws.on('message', (data: Buffer) => {
        const msg = WebSocketMessage.decode(data);
        if (msg.type === WebSocketMessage.Type.RESPONSE && msg.response) {
          const key = toDecimalString(msg.response.id);
          waiting.get(key)?.(msg.response.status ?? 0);
          waiting.delete(key);
          return;
        }
        const r = msg.request;
        if (!r) return;
        fake.requests.push(`${r.verb} ${r.path}`);
        if (r.path === '/v1/keepalive' && fake.silent) return;
        const status =
          r.path === '/v1/slow'
            ? null
            : r.path === '/v1/missing'
              ? 404
              : r.path === '/v1/too-old'
                ? 499
                : 200;
        if (status === null) return; // never answered: the client's timeout must fire
        ws.send(
          WebSocketMessage.encode({
            type: WebSocketMessage.Type.RESPONSE,
            response: {
              id: r.id,
              status,
              message: 'OK',
              headers: ['content-type:application/json'],
              body: Buffer.from(
                JSON.stringify({ echo: r.body ? Buffer.from(r.body).toString() : null }),
              ),
            },
          }).finish(),
        );
      });
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const address = server.address();
  fake.port = typeof address === 'object' && address ? address.port : 0;
  fake.env = resolveEnvironment({
    server: 'custom',
    serviceUrl: `https://127.0.0.1:${fake.port}`,
    caCert: fs.readFileSync(path.join(certDir, 'ca-cert.pem'), 'utf8'),
    trustRoots: ['BXu6QIKVz5MA8gstzfOgRQGqyLqOwNKHL6INkv3IHWMF'],
    transport: 'http1',
  });
  return fake;
}
