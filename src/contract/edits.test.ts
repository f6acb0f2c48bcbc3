import { describe, expect, it } from 'vitest';
import { norm } from './edits.ts';

describe('norm (spec: trim, drop one leading "- ", collapse whitespace, trim)', () => {
  it.each([
    ['  - Order an EKG.\n', 'Order an EKG.'],
    ['- - nested', '- nested'],
    ['Chest pain\n  - Order an EKG\n', 'Chest pain - Order an EKG'],
    ['a\t\tb\r\n c', 'a b c'],
    ['-no space', '-no space'],
    ['-  two spaces', 'two spaces'],
    ['\u00a0non-breaking\u00a0 space\u2003', 'non-breaking space'],
    ['', ''],
    // Unicode White_Space, not JavaScript's \s: NEL is whitespace, U+FEFF (zero-width no-break space) is not.
    ['a\u0085b\u2028c\u3000', 'a b c'],
    ['Chest\ufefftightness', 'Chest\ufefftightness'],
    ['\ufeff- item', '\ufeff- item'],
  ])('%j → %j', (input, expected) => {
    expect(norm(input)).toBe(expected);
  });
});
