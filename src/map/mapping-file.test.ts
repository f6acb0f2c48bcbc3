import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ScribeError } from '../errors.ts';
import { render } from './engine.ts';
import { loadMappingFile } from './mapping-file.ts';
import { probeNotes } from './probes.ts';

const dir = mkdtempSync(join(tmpdir(), 'sb-mapping-'));
function write(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const HEAD = 'id: broken\nversion: 1.0.0\ndescription: a test mapping\nformat: fhir\n';

function loadError(text: string): ScribeError {
  const file = write(`m-${Math.random().toString(36).slice(2)}.yaml`, text);
  try {
    loadMappingFile(file);
  } catch (e) {
    expect(e).toBeInstanceOf(ScribeError);
    return e as ScribeError;
  }
  throw new Error('expected the mapping to be refused');
}

describe('mapping files: located errors', () => {
  it('bad YAML names the file, line and column', () => {
    const e = loadError(`${HEAD}output:\n  new:\n    resourceType: Basic\n   bad: indentation\n`);
    expect(e.code).toBe('MAPPING_INVALID');
    expect(e.where).toMatch(/\.yaml:8:\d+$/);
  });

  it('an unquoted {{ expression }} is explained', () => {
    const e = loadError(
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: {{ %ids.compositionId }}\n`,
    );
    expect(e.message).toMatch(/Quote it/);
    expect(e.where).toMatch(/\.yaml:8:\d+$/);
  });

  it('an unknown field names its line and path', () => {
    const e = loadError(`${HEAD}outptu: {}\noutput:\n  new: { resourceType: Basic }\n`);
    expect(e.code).toBe('MAPPING_INVALID');
    expect(e.message).toContain('"outptu"');
    expect(e.where).toMatch(/\.yaml:5:1 \(\$\)$/);
  });

  it('a FHIRPath syntax error names the line and template path', () => {
    const e = loadError(
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "{{ %ids.compositionId. }}"\n`,
    );
    expect(e.message).toMatch(/FHIRPath syntax error/);
    expect(e.where).toMatch(/\.yaml:8:5 \(output\.new\.id\)$/);
  });

  it('an unclosed {{ is refused at load with its line, and a literal {{ can still be written', async () => {
    const e = loadError(
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "x"\n    code: { text: "urn:x:{{ %note.noteId" }\n`,
    );
    expect(e.code).toBe('MAPPING_INVALID');
    expect(e.message).toMatch(/unclosed \{\{ placeholder/);
    expect(e.where).toMatch(/\.yaml:9:\d+ \(output\.new\.code\.text\)$/);
    // The same with a closed placeholder after it: the stray {{ is still found.
    expect(
      loadError(`${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "{{ %note.noteId }} {{ x"\n`)
        .message,
    ).toMatch(/unclosed/);
    const ok = loadMappingFile(
      write('literal.yaml', `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "a{{ '{{' }}b"\n`),
    );
    const probe = (await probeNotes())[0]!;
    expect((render(ok, { note: probe.note }).value as { id: string }).id).toBe('a{{b');
  });

  it('FHIR output leaves out blank strings, alone or among several values', async () => {
    const m = loadMappingFile(
      write(
        'blank.yaml',
        `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: x\n    code: { text: "{{ %organization.name }}" }\n    given: "{{ %patient.name.given }}"\n    family: " {{ %patient.name.family }} "\n`,
      ),
    );
    const probe = (await probeNotes())[0]!.note;
    const note = {
      ...probe,
      envelope: {
        ...probe.envelope,
        organization: { ...probe.envelope.organization, name: ' \t ' },
        patient: { ...probe.envelope.patient, name: { family: '\u3000', given: ['  ', 'Ada', '\n'] } },
      },
    };
    expect(render(m, { note }).value).toEqual({
      resourceType: 'Basic',
      id: 'x',
      given: ['Ada'],
      meta: expect.anything(),
    });
  });

  it('an unknown variable is refused at load', () => {
    const e = loadError(`${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "{{ %sentence.id }}"\n`);
    expect(e.message).toMatch(/uses %sentence, which is not defined here/);
  });

  it('a lookup of a table the mapping lacks is refused at load', () => {
    const e = loadError(
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    id: "{{ lookup('noteTypes', %note.template).code }}"\n`,
    );
    expect(e.message).toMatch(/table noteTypes, which the mapping does not define/);
  });

  it('a code table that misses a key is a located error when rendered (missing code)', async () => {
    const file = write(
      'missing-code.yaml',
      `${HEAD}tables:\n  noteTypes:\n    HISTORY_AND_PHYSICAL: { code: "34117-2" }\noutput:\n  new:\n    resourceType: Basic\n    code:\n      text: "{{ lookup('noteTypes', %note.template).code }}"\n`,
    );
    const m = loadMappingFile(file);
    const probes = await probeNotes();
    const girpp = probes.find((p) => p.name === 'girpp-new')!;
    try {
      render(m, { note: girpp.note });
      expect.unreachable();
    } catch (e) {
      expect((e as ScribeError).code).toBe('MAPPING_EVAL');
      expect((e as ScribeError).message).toMatch(/table noteTypes has no row for "GIRPP"/);
      expect((e as ScribeError).where).toMatch(/missing-code\.yaml:12:\d+ \(output\.new\.code\.text\)$/);
    }
  });

  it('an unknown directive and a missing partial are refused', () => {
    expect(loadError(`${HEAD}output:\n  new:\n    $fro: "%note.sentences"\n`).message).toMatch(
      /unknown directive \$fro/,
    );
    expect(loadError(`${HEAD}output:\n  new: { $include: nothing }\n`).message).toMatch(
      /no partial named "nothing"/,
    );
  });

  it('a rendering that does not carry sentence text unchanged is refused', () => {
    const e = loadError(
      `${HEAD}renderings:\n  plain:\n    contentType: text/plain\n    sentence: "{{ %sentence.text.upper() }}"\noutput:\n  new: { resourceType: Basic }\n`,
    );
    expect(e.message).toMatch(/carry each sentence unchanged/);
  });

  it('a mapping without a retraction output says so when asked for one', async () => {
    const m = loadMappingFile(
      write('no-retraction.yaml', `${HEAD}output:\n  new: { resourceType: Basic }\n`),
    );
    const r = (await probeNotes()).find((p) => p.name === 'retraction')!;
    expect(() => render(m, { note: r.note, prior: r.prior! })).toThrow(/has no output for a retraction/);
  });
});
