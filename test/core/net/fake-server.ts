/**
 * A small local chat server for transport tests: HTTPS + `ws` (HTTP/1.1 upgrade) speaking
 * WebSocketMessage, with knobs for the faults the tests need (silence, drops, refusals).
 * It uses the mock server's test certificate (valid for 127.0.0.1) and its CA.
 */
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
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
  /** Requests our client made, by path. */
  requests: string[];
  /** When true, keepalive requests get no answer. */
  silent: boolean;
  /** When set, upgrades are refused with this HTTP status. */
  refuseWith: number | null;
  /** Push a server request to the newest socket; resolves with the client's status. */
  push(verb: string, pathName: string, body?: Uint8Array): Promise<number>;
  dropAll(code?: number): void;
  close(): Promise<void>;
}

export async function startFakeChatServer(): Promise<FakeChatServer> {
  const server = https.createServer({
    cert: fs.readFileSync(path.join(certDir, 'cert.pem')),
    key: fs.readFileSync(path.join(certDir, 'key.pem')),
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
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  server.on('upgrade', (req, socket, head) => {
    fake.upgrades++;
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
        const status = r.path === '/v1/slow' ? null : r.path === '/v1/missing' ? 404 : 200;
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
