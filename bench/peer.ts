/**
 * The benchmark's other party, in its own process: the sandbox (Signal's mock server and its
 * simulated phones) driven over IPC by bench/run.ts. Out of process, the mock's own crypto (it
 * decrypts everything we send, encrypts everything we receive) and its bookkeeping no longer share
 * the engine's thread, as a real server and real phones would not: the figures are the engine's.
 */
import { startSandbox, type PrimaryDevice, type Sandbox } from '../test/harness/sandbox';

export type PeerCommand =
  | { cmd: 'start' }
  | { cmd: 'primary'; name: string; contacts?: string[] }
  | { cmd: 'expect-provision' }
  | { cmd: 'complete-provision'; url: string; primary: string }
  | { cmd: 'give-keys'; aci: string; deviceId: number; to: string[] }
  | { cmd: 'queue'; from: string; aci: string; deviceId: number; count: number; base: number }
  | { cmd: 'send'; from: string; aci: string; deviceId: number; text: string }
  | { cmd: 'start-drain'; who: string; count: number }
  | { cmd: 'drained' }
  | { cmd: 'cpu' }
  | { cmd: 'members'; prefix: string; count: number }
  | { cmd: 'group'; owner: string; members: string[] }
  | { cmd: 'queue-sizes'; who: string[] }
  | { cmd: 'multi-recipient-count' }
  | { cmd: 'stop' };

export interface PeerRequest {
  id: number;
  command: PeerCommand;
}

export type PeerReply = { id: number; result: unknown } | { id: number; error: string };

type Device = NonNullable<Awaited<ReturnType<Sandbox['server']['getDeviceByServiceId']>>>;

let sandbox: Sandbox | null = null;
const primaries = new Map<string, PrimaryDevice>();
let provision: ReturnType<Sandbox['server']['waitForProvision']> | null = null;
let drain: Promise<number> | null = null;
const deliveries: Array<Promise<unknown>> = [];

function need<T>(v: T | null | undefined, what: string): T {
  if (v === null || v === undefined) throw new Error(`${what} is unknown`);
  return v;
}

async function device(aci: string, deviceId: number): Promise<Device> {
  const s = need(sandbox, 'the sandbox');
  return need(
    await s.server.getDeviceByServiceId(aci as never, deviceId as never),
    `device ${deviceId}`,
  );
}

async function run(c: PeerCommand): Promise<unknown> {
  switch (c.cmd) {
    case 'start':
      sandbox = await startSandbox();
      return sandbox.environment;
    case 'primary': {
      const s = need(sandbox, 'the sandbox');
      const contacts = (c.contacts ?? []).map((n) => need(primaries.get(n), n));
      const p = await s.createPrimary({ profileName: c.name, contacts });
      primaries.set(c.name, p);
      return { aci: p.device.aci, number: String(p.device.number) };
    }
    case 'expect-provision':
      provision = need(sandbox, 'the sandbox').server.waitForProvision();
      return null;
    case 'complete-provision': {
      const p = await need(provision, 'a provisioning');
      provision = null;
      await p.complete({
        provisionURL: c.url,
        primaryDevice: need(primaries.get(c.primary), c.primary),
      });
      return null;
    }
    case 'give-keys': {
      const d = await device(c.aci, c.deviceId);
      for (const name of c.to)
        await need(primaries.get(name), name).addSingleUseKey(d, await d.popSingleUseKey());
      return null;
    }
    case 'queue': {
      // The mock's send resolves only once delivered: fire them all, return once all are queued.
      const d = await device(c.aci, c.deviceId);
      const from = need(primaries.get(c.from), c.from);
      for (let i = 0; i < c.count; i++)
        deliveries.push(from.sendText(d, `bench ${i}`, { timestamp: c.base + i }));
      const queues = (
        need(sandbox, 'the sandbox').server as unknown as {
          messageQueue: Map<unknown, unknown[]>;
        }
      ).messageQueue;
      while ((queues.get(d)?.length ?? 0) < c.count) await new Promise((r) => setTimeout(r, 5));
      return null;
    }
    case 'send': {
      // To an online client: not awaited (the mock resolves on delivery, after our ACK).
      const d = await device(c.aci, c.deviceId);
      deliveries.push(need(primaries.get(c.from), c.from).sendText(d, c.text));
      return null;
    }
    case 'start-drain': {
      const who = need(primaries.get(c.who), c.who);
      drain = (async () => {
        for (let i = 0; i < c.count; i++) await who.waitForMessage();
        return c.count;
      })();
      return null;
    }
    case 'drained':
      return need(drain, 'a drain');
    case 'cpu': {
      // The peer's own CPU time (mock server + phones), so a phase's cost on this machine can be
      // split between the engine and the party it talks to.
      const { user, system } = process.cpuUsage();
      return (user + system) / 1000;
    }
    case 'members': {
      // Group members, each a phone of its own (created one after another: the mock's key
      // generation is CPU-bound, so in parallel it would be no faster).
      const s = need(sandbox, 'the sandbox');
      const names: string[] = [];
      for (let i = 0; i < c.count; i++) {
        const name = `${c.prefix}${i}`;
        primaries.set(name, await s.createPrimary({ profileName: name }));
        names.push(name);
      }
      return names;
    }
    case 'group': {
      const owner = need(primaries.get(c.owner), c.owner);
      const group = await owner.createGroup({
        title: 'Bench group',
        members: [owner, ...c.members.map((n) => need(primaries.get(n), n))],
      });
      return { id: group.id, masterKey: Buffer.from(group.masterKey).toString('base64') };
    }
    case 'queue-sizes': {
      // What the phones decrypted and queued, consumed so that the next phase counts afresh.
      let total = 0;
      for (const name of c.who) {
        const p = need(primaries.get(name), name);
        const size = p.getMessageQueueSize();
        for (let i = 0; i < size; i++) await p.waitForMessage();
        total += size;
      }
      return total;
    }
    case 'multi-recipient-count':
      return need(sandbox, 'the sandbox').multiRecipient.filter((r) => r.status === 200).length;
    case 'stop':
      await Promise.race([Promise.allSettled(deliveries), new Promise((r) => setTimeout(r, 2000))]);
      await sandbox?.close();
      sandbox = null;
      return null;
  }
}

process.on('message', (req: PeerRequest) => {
  run(req.command).then(
    (result) => process.send?.({ id: req.id, result } satisfies PeerReply),
    (e: unknown) =>
      process.send?.({
        id: req.id,
        error: e instanceof Error ? (e.stack ?? e.message) : String(e),
      } satisfies PeerReply),
  );
});
process.on('disconnect', () => process.exit(0));
