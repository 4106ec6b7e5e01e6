/**
 * The editor as a person uses it (issue 6): Node-RED with this package against the Signal sandbox,
 * opened in headless Chromium (Debian's, driven by playwright-core). Double-click a signal-out node,
 * open its account with the pencil, click "Link device", see the QR code, let the simulated phone
 * approve, see the linked number; back in signal-out, its group picker lists the phone's group and
 * puts group:<id> into "To". Screenshots go to test-output/ (editor-link-qr.png with the QR code,
 * editor-link.png linked, editor-group-picker.png).
 *
 * Chromium is required, not optional: without it this test fails and says how to install it
 * (.ci/run installs it on a fresh machine).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { projectRoot, startNodeRed, type NodeRedProcess } from '../harness/node-red';
import { StorageState } from '@signalapp/mock-server';
import { startSandbox, withTimeout, type PrimaryDevice, type Sandbox } from '../harness/sandbox';
import { accountConfig } from './support';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ACCOUNT = 'acct0000000000e1';

describe('editor (headless Chromium): linking from the account dialog', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let phone: PrimaryDevice;
  let group: Awaited<ReturnType<PrimaryDevice['createGroup']>>;
  let red: NodeRedProcess;
  let browser: Browser;
  const outDir = path.join(projectRoot(), 'test-output');

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the editor test needs it. Install Debian's package ` +
          '(apt-get update && apt-get install -y --no-install-recommends chromium), or set ' +
          'CHROMIUM_PATH. .ci/run installs it when it is missing.',
      );
    }
    sandbox = await startSandbox();
    const bob = await sandbox.createPrimary({ profileName: 'Bob' });
    phone = await sandbox.createPrimary({ profileName: 'My phone', contacts: [bob] });
    // The phone is in a group: after linking, signal-out's group picker lists it.
    group = await phone.createGroup({ title: 'On call', members: [phone, bob] });
    await phone.setStorageState(StorageState.getEmpty().addGroup(group, { whitelisted: true }));
    red = await startNodeRed({
      flows: [
        { id: 'tab1', type: 'tab', label: 'Send an alert' },
        { ...accountConfig(sandbox, ACCOUNT, 'Sandbox phone'), deviceName: 'Node-RED editor test' },
        {
          id: 'out1',
          type: 'signal-out',
          z: 'tab1',
          name: 'Alert',
          account: ACCOUNT,
          to: String(bob.device.number),
          x: 320,
          y: 120,
          wires: [[]],
        },
      ],
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // As root on a machine with no outside network: no sandbox, no GPU, and none of Chromium's
      // background connections (they would only be refused).
      args: [
        '--no-sandbox',
        '--headless=new',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
    });
  });
  after(async () => {
    await browser?.close();
    await red?.stop();
    await sandbox?.close();
  });

  async function shot(page: Page, name: string): Promise<string> {
    fs.mkdirSync(outDir, { recursive: true });
    const file = path.join(outDir, name);
    await page.screenshot({ path: file });
    return file;
  }

  it('signal-out → pencil on its account → "Link device" → QR code → the phone approves → linked number shown', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    try {
      await page.goto(red.url);
      // The flow is drawn: the signal-out node is an SVG group with the node's id.
      const out = page.locator('g#out1');
      await out.waitFor({ state: 'visible', timeout: 30_000 });
      await out.locator('.red-ui-flow-node').dblclick();
      // The signal-out dialog: its account field, and the pencil that edits that account.
      const edit = page.locator('#node-input-btn-account-edit');
      await edit.waitFor({ state: 'visible' });
      assert.match(
        await page.locator('#node-input-account option:checked').innerText(),
        /Sandbox phone/,
      );
      await edit.click();
      // The account dialog; its "Link device" button by id, or by its text.
      const linkButton = page
        .locator('#signal-account-link-button')
        .or(page.getByRole('button', { name: 'Link device', exact: true }))
        .first();
      await linkButton.waitFor({ state: 'visible' });
      // Labels come from the package's locale catalog (a raw key means it was not loaded).
      assert.equal((await linkButton.innerText()).trim(), 'Link device');
      const state = page.locator('#signal-account-link-state');
      // The dialog asked the runtime for the link state and shows it (not linked yet).
      await state.filter({ hasText: /\S/ }).waitFor();
      assert.doesNotMatch(await state.innerText(), /Linked:|signal-account\./);

      const provision = withTimeout(sandbox.server.waitForProvision(), 20_000, 'provisioning');
      await linkButton.click();
      // The QR code: an <svg> the runtime drew, inside the dialog.
      const qr = page.locator('#signal-account-link-qr svg');
      await qr.waitFor({ state: 'visible', timeout: 15_000 });
      const box = await qr.boundingBox();
      assert.ok(box && box.width > 100 && box.height > 100, `QR code size ${JSON.stringify(box)}`);
      assert.ok((await qr.locator('path').count()) > 0, 'the QR svg draws paths');
      await shot(page, 'editor-link-qr.png');

      // The simulated phone scans the code: the URL in it is the one the admin route serves.
      const link = (await (await fetch(`${red.url}/signal-account/${ACCOUNT}/link`)).json()) as {
        state: string;
        url?: string;
      };
      assert.equal(link.state, 'waiting');
      assert.ok(link.url);
      await (await provision).complete({ provisionURL: link.url, primaryDevice: phone });

      // The dialog follows by itself: linked, with the phone's number, and no QR code left.
      await state.filter({ hasText: String(phone.device.number) }).waitFor({ timeout: 20_000 });
      assert.equal(await qr.count(), 0);
      const file = await shot(page, 'editor-link.png');
      assert.ok(fs.statSync(file).size > 10_000, `${file} looks empty`);

      // The deployed account connects without a redeploy.
      const deadline = Date.now() + 20_000;
      for (;;) {
        const s = (await (await fetch(`${red.url}/signal-account/${ACCOUNT}/status`)).json()) as {
          connected: boolean;
          number?: string;
        };
        if (s.connected) {
          assert.equal(s.number, phone.device.number);
          break;
        }
        assert.ok(Date.now() < deadline, `not connected after linking: ${JSON.stringify(s)}`);
        await new Promise((r) => setTimeout(r, 200));
      }

      // Back in signal-out's dialog: its group picker lists the phone's group (refresh reads the
      // phone's storage), and picking it puts group:<id> into "To".
      await page.locator('#node-config-dialog-cancel').click();
      const picker = page.locator('#signal-out-group');
      await picker.waitFor({ state: 'visible' });
      await page.locator('#signal-out-group-refresh').click();
      const option = picker.locator('option', { hasText: 'On call (2)' });
      await option.waitFor({ state: 'attached', timeout: 20_000 });
      await picker.selectOption({ label: 'On call (2)' });
      assert.equal(await page.locator('#node-input-to').inputValue(), `group:${group.id}`);
      await shot(page, 'editor-group-picker.png');
      assert.deepEqual(pageErrors, [], 'errors in the editor page');
    } catch (e) {
      // What the page showed when it went wrong, for whoever reads the failure.
      const file = await shot(page, 'editor-failure.png').catch(() => 'no screenshot');
      const detail = `screenshot: ${file}; page errors: ${JSON.stringify(pageErrors)}; Node-RED said:\n${red.output().slice(-3000)}`;
      if (e instanceof Error) e.message += `\n${detail}`;
      throw e;
    } finally {
      await page.close();
    }
  });
});
