import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { encodeFrame, isFrameable, MllpFrameDecoder } from './mllp-frame.ts';

const MSG = 'MSH|^~\\&|EHR|H|||20261120||ACK|1|P|2.5.1\rMSA|AA|X1';

describe('MLLP framing', () => {
  it('wraps a message in VT … FS CR as UTF-8', () => {
    const f = encodeFrame('MSH|é');
    expect([...f]).toEqual([0x0b, ...Buffer.from('MSH|é', 'utf8'), 0x1c, 0x0d]);
  });

  it('decodes frames split anywhere, several per chunk, and skips bytes between frames', () => {
    const wire = Buffer.concat([
      Buffer.from('noise'),
      encodeFrame(MSG),
      Buffer.from('\r\n'),
      encodeFrame('MSH|ü✓'),
    ]);
    for (let cut = 0; cut <= wire.length; cut++) {
      const d = new MllpFrameDecoder();
      const out = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut))];
      expect(out).toEqual([MSG, 'MSH|ü✓']);
      expect(d.skippedBytes).toBe(7);
    }
  });

  it('keeps a lone FS that is not followed by CR inside the frame', () => {
    const d = new MllpFrameDecoder();
    expect(d.push(Buffer.from('\x0bA\x1cB\x1c'))).toEqual([]);
    expect(d.push(Buffer.from('\r'))).toEqual(['A\x1cB']);
  });

  it('refuses an unfinished frame larger than the cap', () => {
    const d = new MllpFrameDecoder(16);
    expect(() => d.push(Buffer.from(`\x0b${'x'.repeat(32)}`))).toThrow(ScribeError);
  });

  it('knows which texts cannot be framed', () => {
    expect(isFrameable(MSG)).toBe(true);
    expect(isFrameable('MSH|\x0b')).toBe(false);
    expect(isFrameable('MSH|\x1c')).toBe(false);
  });
});
