import assert from 'node:assert/strict';
import zlib from 'node:zlib';
import { imageSize, sniffContentType } from '../../../core/messaging/media';

const u16be = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const u16le = (n: number) => Buffer.from([n & 0xff, n >> 8]);
const u32be = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};
const u32le = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};

/** A whole, decodable PNG (zlib-deflated RGB rows; the chunk CRCs by zlib.crc32 where present). */
function png(width: number, height: number): Buffer {
  const crc = (b: Buffer) => (zlib as unknown as { crc32?: (b: Buffer) => number }).crc32?.(b) ?? 0;
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    return Buffer.concat([u32be(data.length), body, u32be(crc(body) >>> 0)]);
  };
  const ihdr = Buffer.concat([u32be(width), u32be(height), Buffer.from([8, 2, 0, 0, 0])]);
  const rows = Buffer.alloc((width * 3 + 1) * height, 0x7f);
  for (let y = 0; y < height; y++) rows[y * (width * 3 + 1)] = 0;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(rows)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const segment = (marker: number, data: Buffer) =>
  Buffer.concat([Buffer.from([0xff, marker]), u16be(data.length + 2), data]);

/** A JPEG's header: SOI, JFIF APP0, optionally an EXIF APP1 with an orientation, DQT, then SOF. */
function jpeg(
  width: number,
  height: number,
  opts: { orientation?: number; sof?: number; bigEndianExif?: boolean; pad?: number } = {},
): Buffer {
  const parts = [Buffer.from([0xff, 0xd8])];
  parts.push(segment(0xe0, Buffer.from('JFIF\0\x01\x01\0\0\x01\0\x01\0\0', 'latin1')));
  if (opts.orientation !== undefined) {
    const be = opts.bigEndianExif === true;
    const w16 = be ? u16be : u16le;
    const w32 = be ? u32be : u32le;
    const tiff = Buffer.concat([
      Buffer.from(be ? 'MM' : 'II', 'ascii'),
      w16(42),
      w32(8),
      w16(2), // two entries: ImageDescription (skipped), then Orientation
      Buffer.concat([w16(0x010e), w16(2), w32(1), Buffer.alloc(4)]),
      Buffer.concat([w16(0x0112), w16(3), w32(1), w16(opts.orientation), Buffer.alloc(2)]),
      w32(0),
    ]);
    parts.push(segment(0xe1, Buffer.concat([Buffer.from('Exif\0\0', 'latin1'), tiff])));
  }
  if (opts.pad) parts.push(segment(0xe2, Buffer.alloc(opts.pad, 0x20)));
  parts.push(segment(0xdb, Buffer.alloc(65, 1)));
  parts.push(
    segment(
      opts.sof ?? 0xc0,
      Buffer.concat([Buffer.from([8]), u16be(height), u16be(width), Buffer.from([3, 1, 0x22, 0])]),
    ),
  );
  parts.push(Buffer.from([0xff, 0xda, 0, 8, 1, 1, 0, 0, 0x3f, 0, 0x12, 0x34]));
  return Buffer.concat(parts);
}

function gif(width: number, height: number): Buffer {
  return Buffer.concat([
    Buffer.from('GIF89a', 'ascii'),
    u16le(width),
    u16le(height),
    Buffer.alloc(8),
  ]);
}

const riff = (form: string, chunk: string, data: Buffer) =>
  Buffer.concat([
    Buffer.from('RIFF', 'ascii'),
    u32le(4 + 8 + data.length),
    Buffer.from(form + chunk, 'ascii'),
    u32le(data.length),
    data,
  ]);

function webpLossy(width: number, height: number): Buffer {
  return riff(
    'WEBP',
    'VP8 ',
    Buffer.concat([Buffer.from([0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]), u16le(width), u16le(height)]),
  );
}

function webpLossless(width: number, height: number): Buffer {
  const bits = (width - 1) | ((height - 1) << 14);
  return riff(
    'WEBP',
    'VP8L',
    Buffer.concat([Buffer.from([0x2f]), u32le(bits >>> 0), Buffer.alloc(5)]),
  );
}

function webpExtended(width: number, height: number): Buffer {
  const u24 = (n: number) => Buffer.from([n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff]);
  return riff('WEBP', 'VP8X', Buffer.concat([Buffer.alloc(4), u24(width - 1), u24(height - 1)]));
}

const ftyp = (brand: string) =>
  Buffer.concat([u32be(24), Buffer.from(`ftyp${brand}\0\0\0\0isommp41`, 'latin1')]);

describe('core/messaging/media: content types and image sizes from a file head', () => {
  it('sniffs each format by its magic bytes, whatever the name says', () => {
    const cases: Array<[Buffer, string]> = [
      [png(3, 2), 'image/png'],
      [jpeg(3, 2), 'image/jpeg'],
      [gif(3, 2), 'image/gif'],
      [webpLossy(3, 2), 'image/webp'],
      [ftyp('heic'), 'image/heic'],
      [ftyp('mif1'), 'image/heif'],
      [ftyp('isom'), 'video/mp4'],
      [ftyp('mp42'), 'video/mp4'],
      [ftyp('qt  '), 'video/quicktime'],
      [ftyp('M4A '), 'audio/mp4'],
      [
        Buffer.from([0x1a, 0x45, 0xdf, 0xa3, 0x9f, 0x42, 0x82, 0x84, 0x77, 0x65, 0x62, 0x6d]),
        'video/webm',
      ],
      [Buffer.from('%PDF-1.7\n', 'latin1'), 'application/pdf'],
      [Buffer.from('PK\x03\x04\x14\0', 'latin1'), 'application/zip'],
      [Buffer.from('OggS\0\x02\0\0', 'latin1'), 'audio/ogg'],
      [Buffer.from('ID3\x04\0\0', 'latin1'), 'audio/mpeg'],
      [Buffer.from([0xff, 0xfb, 0x90, 0x64]), 'audio/mpeg'],
      [Buffer.from([0xff, 0xf1, 0x50, 0x80]), 'audio/aac'],
      [riff('WAVE', 'fmt ', Buffer.alloc(16)), 'audio/wav'],
    ];
    for (const [head, type] of cases) {
      assert.equal(sniffContentType(head), type, head.subarray(0, 12).toString('hex'));
      assert.equal(sniffContentType(head, 'misnamed.txt'), type, `${type} named .txt`);
    }
  });

  it('falls back to the extension (text has no magic), then to application/octet-stream', () => {
    const text = Buffer.from('hello, world\n');
    assert.equal(sniffContentType(text, 'notes.txt'), 'text/plain');
    assert.equal(sniffContentType(text, '/var/log/Node-RED.LOG'), 'text/plain');
    assert.equal(sniffContentType(text, 'table.csv'), 'text/csv');
    assert.equal(sniffContentType(text, 'data.json'), 'application/json');
    assert.equal(sniffContentType(text, 'C:\\reports\\week.md'), 'text/markdown');
    assert.equal(sniffContentType(text), 'application/octet-stream');
    assert.equal(sniffContentType(text, 'noextension'), 'application/octet-stream');
    assert.equal(sniffContentType(text, '.hidden'), 'application/octet-stream');
    assert.equal(sniffContentType(text, 'archive.unknownext'), 'application/octet-stream');
    assert.equal(sniffContentType(new Uint8Array(0), 'x.pdf'), 'application/pdf');
    assert.equal(sniffContentType(new Uint8Array(0)), 'application/octet-stream');
  });

  it('a ZIP named as an office document or e-book takes the name’s type; other ZIPs stay ZIP', () => {
    const zip = Buffer.from('PK\x03\x04\x14\0', 'latin1');
    assert.equal(
      sniffContentType(zip, 'report.docx'),
      'application/vnd.openxmlformats-officedocument.wordprocessingml.document',
    );
    assert.equal(sniffContentType(zip, 'book.epub'), 'application/epub+zip');
    assert.equal(sniffContentType(zip, 'photo.png'), 'application/zip');
  });

  it('reads the size of a PNG, GIF and each WebP kind (width ≠ height, so no swap goes unseen)', () => {
    assert.deepEqual(imageSize(png(640, 480), 'image/png'), { width: 640, height: 480 });
    assert.deepEqual(imageSize(png(1, 70_000), 'image/png'), { width: 1, height: 70_000 });
    assert.deepEqual(imageSize(gif(300, 20), 'image/gif'), { width: 300, height: 20 });
    assert.deepEqual(imageSize(webpLossy(1920, 1080), 'image/webp'), { width: 1920, height: 1080 });
    assert.deepEqual(imageSize(webpLossless(16383, 7), 'image/webp'), { width: 16383, height: 7 });
    assert.deepEqual(imageSize(webpExtended(20_000, 3), 'image/webp'), {
      width: 20_000,
      height: 3,
    });
  });

  it('finds a JPEG’s frame header past its other segments, any SOF kind, and turns it by EXIF', () => {
    assert.deepEqual(imageSize(jpeg(800, 600), 'image/jpeg'), { width: 800, height: 600 });
    assert.deepEqual(imageSize(jpeg(800, 600, { sof: 0xc2 }), 'image/jpeg'), {
      width: 800,
      height: 600,
    });
    assert.deepEqual(imageSize(jpeg(800, 600, { pad: 30_000 }), 'image/jpeg'), {
      width: 800,
      height: 600,
    });
    for (const orientation of [1, 2, 3, 4])
      assert.deepEqual(imageSize(jpeg(800, 600, { orientation }), 'image/jpeg'), {
        width: 800,
        height: 600,
      });
    // 5-8: the camera was turned a quarter; the picture is shown 600 wide.
    for (const orientation of [5, 6, 7, 8])
      for (const bigEndianExif of [false, true])
        assert.deepEqual(
          imageSize(jpeg(800, 600, { orientation, bigEndianExif }), 'image/jpeg'),
          { width: 600, height: 800 },
          `orientation ${orientation}`,
        );
    // DHT (C4) is not a frame header: the SOF after it is.
    const withDht = jpeg(5, 9);
    const dht = segment(0xc4, Buffer.alloc(20));
    const spliced = Buffer.concat([withDht.subarray(0, 2), dht, withDht.subarray(2)]);
    assert.deepEqual(imageSize(spliced, 'image/jpeg'), { width: 5, height: 9 });
  });

  it('undefined when the head does not show a size: cut short, another type, a mismatched type', () => {
    const big = jpeg(800, 600, { pad: 30_000 });
    assert.equal(
      imageSize(big.subarray(0, 20_000), 'image/jpeg'),
      undefined,
      'SOF beyond the head',
    );
    assert.equal(imageSize(png(4, 4).subarray(0, 20), 'image/png'), undefined);
    assert.equal(imageSize(webpLossy(4, 4).subarray(0, 20), 'image/webp'), undefined);
    assert.equal(imageSize(png(4, 4), 'image/jpeg'), undefined, 'not what it claims');
    assert.equal(imageSize(png(4, 4), 'application/pdf'), undefined);
    assert.equal(imageSize(ftyp('heic'), 'image/heic'), undefined, 'HEIC sizes are not read');
    assert.equal(imageSize(new Uint8Array(0), 'image/png'), undefined);
    assert.equal(imageSize(png(0, 5), 'image/png'), undefined, 'a zero size is no size');
    // A JPEG whose scan starts before any frame header.
    const noSof = Buffer.from([0xff, 0xd8, 0xff, 0xda, 0, 8, 1, 1, 0, 0, 0x3f, 0]);
    assert.equal(imageSize(noSof, 'image/jpeg'), undefined);
    assert.equal(imageSize(Buffer.from([0xff, 0xd8, 0x00, 0x00, 0, 0]), 'image/jpeg'), undefined);
  });

  it('the content type is matched case-insensitively', () => {
    assert.deepEqual(imageSize(gif(2, 3), 'IMAGE/GIF'), { width: 2, height: 3 });
  });
});
