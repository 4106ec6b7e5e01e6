/**
 * nodes/lib/attachments.ts without a server: what a msg's attachments become for the engine (the
 * sandbox suite, signal-out-attachments.test.ts, sends them end to end).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { attachmentSpecsOf, resolveAttachments } from '../../nodes/lib/attachments';

const PNG_HEAD = Buffer.concat([
  Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]),
  Buffer.from('IHDR', 'ascii'),
  Buffer.from([0, 0, 0x01, 0x40, 0, 0, 0, 0xf0, 8, 2, 0, 0, 0]),
]);

describe('nodes/lib/attachments: msg.attachments and a Buffer payload for the engine', () => {
  let dir = '';
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sigflow-att-lib-'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('one entry alone is a list of one, named msg.attachments', async () => {
    const specs = attachmentSpecsOf(undefined, PNG_HEAD);
    assert.deepEqual(
      specs.map((s) => s.what),
      ['msg.attachments'],
    );
    assert.throws(
      () => attachmentSpecsOf(undefined, 7),
      /^InvalidInputError: msg.attachments must/,
    );
    const [a] = await resolveAttachments(specs, dir);
    assert.deepEqual(a, { data: PNG_HEAD, contentType: 'image/png', width: 320, height: 240 });
  });

  it('a Buffer payload comes first; nothing at all is no attachments', () => {
    const specs = attachmentSpecsOf(Buffer.from('a'), [Buffer.from('b')]);
    assert.deepEqual(
      specs.map((s) => s.what),
      ['msg.payload', 'msg.attachments[0]'],
    );
    assert.deepEqual(attachmentSpecsOf('text', undefined), []);
    assert.deepEqual(attachmentSpecsOf('text', null), []);
    assert.deepEqual(attachmentSpecsOf('text', []), []);
  });

  it('a path resolves against the given folder, keeps an absolute one, and names the file', async () => {
    fs.writeFileSync(path.join(dir, 'cam.png'), PNG_HEAD);
    const elsewhere = path.join(dir, 'sub');
    fs.mkdirSync(elsewhere);
    fs.writeFileSync(path.join(elsewhere, 'notes'), 'plain words');
    const out = await resolveAttachments(
      attachmentSpecsOf(undefined, ['cam.png', path.join(elsewhere, 'notes')]),
      dir,
    );
    assert.deepEqual(out, [
      {
        path: path.join(dir, 'cam.png'),
        fileName: 'cam.png',
        contentType: 'image/png',
        width: 320,
        height: 240,
      },
      {
        path: path.join(elsewhere, 'notes'),
        fileName: 'notes',
        contentType: 'application/octet-stream',
      },
    ]);
  });

  it('a received entry forwarded (signal-in’s fields) keeps what the engine sends and drops size', async () => {
    const p = path.join(dir, 'a1b2c3');
    fs.writeFileSync(p, PNG_HEAD);
    const received = {
      contentType: 'image/png',
      fileName: 'photo.png',
      size: PNG_HEAD.length,
      path: p,
      caption: 'look',
      width: 4,
      height: 3,
    };
    const [a] = await resolveAttachments(attachmentSpecsOf(undefined, [received]), dir);
    assert.deepEqual(a, {
      contentType: 'image/png',
      fileName: 'photo.png',
      path: p,
      caption: 'look',
      width: 4,
      height: 3,
    });
  });

  it('a FIFO is refused as not a regular file, without waiting for a writer', async () => {
    const p = path.join(dir, 'pipe');
    execFileSync('mkfifo', [p]);
    await assert.rejects(
      resolveAttachments(attachmentSpecsOf(undefined, [p]), dir),
      /msg\.attachments\[0\]: .*pipe is not a regular file/,
    );
  });
});
