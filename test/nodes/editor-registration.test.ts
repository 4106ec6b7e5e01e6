/**
 * The registration part of the account dialog as a person uses it (issue 7), in headless Chromium
 * against Node-RED and the Signal sandbox (any captcha, code 111111): "Register a new number" →
 * number, captcha link and token, voice call, owner secret → "Send code" → a wrong code shows the
 * error → the right code → the registered number, and the deployed account connects. The captcha
 * page link points at Signal's page. Screenshots go to test-output/ (editor-register-code.png while
 * waiting for the code, editor-register.png registered).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { projectRoot, startNodeRed, type NodeRedProcess } from '../harness/node-red';
import { startSandbox, type Sandbox } from '../harness/sandbox';
import { accountConfig } from './support';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ACCOUNT = 'acct0000000000r1';
const NUMBER = '+14155554100';

describe('editor (headless Chromium): registering a number from the account dialog', function () {
  this.timeout(120_000);
  let sandbox: Sandbox;
  let red: NodeRedProcess;
  let browser: Browser;
  const outDir = path.join(projectRoot(), 'test-output');

  before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the editor test needs it. Install Debian's package ` +
          '(apt-get update && apt-get install -y --no-install-recommends chromium), or set ' +
          'CHROMIUM_PATH.',
      );
    }
    sandbox = await startSandbox();
    red = await startNodeRed({
      flows: [
        { id: 'tab1', type: 'tab', label: 'Bot' },
        accountConfig(sandbox, ACCOUNT, 'Bot number'),
        {
          id: 'out1',
          type: 'signal-out',
          z: 'tab1',
          name: 'Reply',
          account: ACCOUNT,
          to: '',
          x: 320,
          y: 120,
          wires: [[]],
        },
      ],
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
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

  it('Register a new number → captcha token → Send code → wrong code shown → right code → registered and connected', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    try {
      await page.goto(red.url);
      const out = page.locator('g#out1');
      await out.waitFor({ state: 'visible', timeout: 30_000 });
      await out.locator('.red-ui-flow-node').dblclick();
      const edit = page.locator('#node-input-btn-account-edit');
      await edit.waitFor({ state: 'visible' });
      await edit.click();

      const toggle = page.locator('#signal-account-register-toggle');
      await toggle.waitFor({ state: 'visible' });
      assert.equal((await toggle.innerText()).trim(), 'Register a new number');
      await toggle.click();
      const link = page.locator('#signal-account-register a[href*="signalcaptchas.org"]');
      assert.equal(
        await link.getAttribute('href'),
        'https://signalcaptchas.org/registration/generate.html',
      );
      assert.equal(await link.getAttribute('target'), '_blank');
      assert.equal(
        await page.locator('#signal-account-register-secret').getAttribute('type'),
        'password',
      );

      const state = page.locator('#signal-account-register-state');
      await page.locator('#signal-account-register-number').fill(NUMBER);
      await page
        .locator('#signal-account-register-captcha')
        .fill('signalcaptcha://editor.test.token');
      await page.locator('#signal-account-register-transport').selectOption('voice');
      await page.locator('#signal-account-register-secret').fill('editor owner secret');
      await page.locator('#signal-account-register-start').click();
      await state.filter({ hasText: NUMBER }).waitFor({ timeout: 20_000 });
      assert.match(await state.innerText(), /voice call/);
      assert.doesNotMatch(await state.innerText(), /signal-account\./, 'a raw i18n key');
      const code = page.locator('#signal-account-register-code');
      await code.waitFor({ state: 'visible' });
      await shot(page, 'editor-register-code.png');

      await code.fill('000000');
      await page.locator('#signal-account-register-verify').click();
      await state.filter({ hasText: /wrong or expired/ }).waitFor({ timeout: 20_000 });
      await code.fill('111111');
      await page.locator('#signal-account-register-verify').click();
      await state.filter({ hasText: /Registered:/ }).waitFor({ timeout: 20_000 });
      assert.match(await state.innerText(), new RegExp(`\\${NUMBER}`));
      // The secret fields are emptied once done.
      assert.equal(await page.locator('#signal-account-register-secret').inputValue(), '');
      assert.equal(await page.locator('#signal-account-register-captcha').inputValue(), '');
      const file = await shot(page, 'editor-register.png');
      assert.ok(fs.statSync(file).size > 10_000, `${file} looks empty`);

      const s = (await (await fetch(`${red.url}/signal-account/${ACCOUNT}/status`)).json()) as {
        connected: boolean;
        number?: string;
      };
      assert.equal(s.connected, true);
      assert.equal(s.number, NUMBER);
      assert.deepEqual(pageErrors, [], 'errors in the editor page');
      assert.equal(red.output().includes('editor owner secret'), false, 'the secret was logged');
      assert.equal(red.output().includes('editor.test.token'), false, 'the captcha was logged');
    } catch (e) {
      const file = await shot(page, 'editor-register-failure.png').catch(() => 'no screenshot');
      const detail = `screenshot: ${file}; page errors: ${JSON.stringify(pageErrors)}; Node-RED said:\n${red.output().slice(-3000)}`;
      if (e instanceof Error) e.message += `\n${detail}`;
      throw e;
    } finally {
      await page.close();
    }
  });
});
