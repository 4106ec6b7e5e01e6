/**
 * The engine in a process of its own, for the SIGKILL test (kill.test.ts): opens the account,
 * connects, appends each emitted message's timestamp to a file, and SIGKILLs itself when it starts
 * processing its KILL_AT-th envelope (deterministic: in the middle of receiving, never inside a
 * listener). Without KILL_AT it runs until the server's queue is empty, then closes cleanly.
 */
import fs from 'node:fs';
import { SignalClient } from '../../core/client';
import type { EnvironmentOptions } from '../../core/config';
import { Receiver } from '../../core/messaging/receiver';

async function main(): Promise<void> {
  const dataFile = process.env.SIGFLOW_DATA_FILE as string;
  const out = process.env.SIGFLOW_OUT as string;
  const environment = JSON.parse(process.env.SIGFLOW_ENV as string) as EnvironmentOptions;
  const killAt = Number(process.env.SIGFLOW_KILL_AT ?? 0);
  const fd = fs.openSync(out, 'a');
  let envelopes = 0;
  const proto = Receiver.prototype as unknown as {
    processEnvelope: (this: Receiver, body: Uint8Array) => Promise<number>;
  };
  const original = proto.processEnvelope;
  proto.processEnvelope = function (body) {
    envelopes++;
    if (killAt && envelopes === killAt) process.kill(process.pid, 'SIGKILL');
    return original.call(this, body);
  };
  const client = await SignalClient.open({ dataFile, environment });
  client.on('event', (ev) => {
    if (ev.type === 'message') fs.writeSync(fd, `${ev.timestamp}\n`);
  });
  const drained = new Promise<void>((resolve) => client.once('queue-empty', () => resolve()));
  await client.connect();
  await drained;
  await client.idle();
  await client.close();
  fs.closeSync(fd);
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
