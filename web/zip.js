// A stored (uncompressed) zip archive, so that an exported model lands as one download in every
// browser. Safetensors weights barely compress, so storing loses little and needs no library.
// Format: PKWARE APPNOTE 6.3.10, sections 4.3.7 (local header), 4.3.12 (central directory) and
// 4.3.16 (end of central directory); names in UTF-8 (flag bit 11). No zip64: each file and the
// archive stay below 4 GiB.

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE 802.3, as zip and PNG use it) of `bytes`. */
export function crc32(bytes) {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** MS-DOS date and time fields of `d`. */
function dosTime(d) {
  return {
    time: (d.getHours() << 11) | (d.getMinutes() << 5) | (d.getSeconds() >> 1),
    date: ((Math.max(d.getFullYear(), 1980) - 1980) << 9) | ((d.getMonth() + 1) << 5) | d.getDate(),
  };
}

const LIMIT = 0xffffffff;

/**
 * A zip `Blob` holding `files` (`[{name, bytes: Uint8Array}]`), stored uncompressed, in order.
 * Throws a named error for a file or archive too large for a zip without zip64.
 */
export function zip(files, when = new Date()) {
  const enc = new TextEncoder();
  const { time, date } = dosTime(when);
  const parts = [];
  const central = [];
  let offset = 0;
  for (const { name, bytes } of files) {
    if (bytes.length >= LIMIT) throw new Error(`${name}: ${bytes.length} bytes, too large for a zip archive (4 GiB at most)`);
    const nameBytes = enc.encode(name);
    const crc = crc32(bytes);
    // The fields the local header (from byte 4) and the central entry (from byte 6) share.
    const shared = (view, at) => {
      view.setUint16(at, 20, true); // version needed: 2.0
      view.setUint16(at + 2, 0x0800, true); // UTF-8 names
      view.setUint16(at + 4, 0, true); // stored
      view.setUint16(at + 6, time, true);
      view.setUint16(at + 8, date, true);
      view.setUint32(at + 10, crc, true);
      view.setUint32(at + 14, bytes.length, true); // compressed size
      view.setUint32(at + 18, bytes.length, true); // uncompressed size
      view.setUint16(at + 22, nameBytes.length, true);
    };
    const local = new DataView(new ArrayBuffer(30));
    local.setUint32(0, 0x04034b50, true);
    shared(local, 4); // extra length (28): 0
    const entry = new DataView(new ArrayBuffer(46));
    entry.setUint32(0, 0x02014b50, true);
    entry.setUint16(4, 20, true); // made by: 2.0
    shared(entry, 6);
    // extra, comment, disk, internal attributes: 0; external attributes: 0.
    entry.setUint32(42, offset, true);
    parts.push(local, nameBytes, bytes);
    central.push(entry, nameBytes);
    offset += 30 + nameBytes.length + bytes.length;
    if (offset >= LIMIT) throw new Error('the archive would exceed 4 GiB, too large for a zip archive');
  }
  const size = central.reduce((n, p) => n + p.byteLength, 0);
  const end = new DataView(new ArrayBuffer(22));
  end.setUint32(0, 0x06054b50, true);
  end.setUint16(8, files.length, true);
  end.setUint16(10, files.length, true);
  end.setUint32(12, size, true);
  end.setUint32(16, offset, true);
  return new Blob([...parts, ...central, end], { type: 'application/zip' });
}
