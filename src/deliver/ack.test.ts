import { describe, expect, it } from 'vitest';
import { ackTable, classifyAck, DEFAULT_ACK_TABLE, parseAck } from './ack.ts';
import { messageControlId } from './mllp.ts';

describe('ACK parsing and the ACK table', () => {
  it('reads MSA and ERR as received', () => {
    const ack = parseAck(
      'MSH|^~\\&|EHR|H|SB|R|20261120||ACK^T02^ACK|9|P|2.5.1\rMSA|ae|CTRL1|Bad \\F\\ data\rERR||OBX^1^5|207^Application internal error^HL70357|E||||Text too long',
    );
    expect(ack).toEqual({
      code: 'AE',
      controlId: 'CTRL1',
      text: 'Bad \\F\\ data',
      errors: [
        {
          location: 'OBX^1^5',
          hl7ErrorCode: '207^Application internal error^HL70357',
          severity: 'E',
          userMessage: 'Text too long',
        },
      ],
    });
  });

  it('returns undefined for text that is not an ACK', () => {
    expect(parseAck('hello')).toBeUndefined();
    expect(parseAck('MSH|^~\\&|EHR|H\rEVN|T02')).toBeUndefined();
  });

  it('classifies with the default table and with overrides', () => {
    expect(Object.entries(DEFAULT_ACK_TABLE)).toEqual([
      ['AA', 'delivered'],
      ['CA', 'delivered'],
      ['AE', 'rejected'],
      ['CR', 'rejected'],
      ['AR', 'retry'],
      ['CE', 'retry'],
    ]);
    const t = ackTable({ AE: 'retry' });
    expect(classifyAck('AE', t)).toBe('retry');
    expect(classifyAck('AE')).toBe('rejected');
    expect(classifyAck('ZZ', t)).toBeUndefined();
    expect(DEFAULT_ACK_TABLE.AE).toBe('rejected');
  });

  it('finds MSH-10 in an ER7 message', () => {
    expect(messageControlId('MSH|^~\\&|A|B|C|D|20261120||MDM^T02|CTRL-9|P|2.5.1\rEVN|T02')).toBe('CTRL-9');
    expect(messageControlId('EVN|T02')).toBeUndefined();
  });
});
