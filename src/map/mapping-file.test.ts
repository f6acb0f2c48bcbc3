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
    expect(e.message).toContain('unknown key(s) "outptu"');
    expect(e.message.split('"outptu"')).toHaveLength(2); // named once
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

describe('typos in what a template reads are refused at load', () => {
  it('a member a root variable does not have (%note.signedat), located', () => {
    const e = loadError(
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    created: "{{ %note.signedat }}"\n`,
    );
    expect(e.code).toBe('MAPPING_INVALID');
    expect(e.detail).toMatch(/reads %note\.signedat, which %note does not have \(it has: .*signedAt/);
    expect(e.where).toMatch(/:8:5 \(output\.new\.created\)$/);
    // Functions on a root and members of members are not members of the root.
    const file = write(
      'ok-members.yaml',
      `${HEAD}output:\n  new:\n    resourceType: Basic\n    created: "{{ iif(%prior.exists(), %note.signedAt, %note.signedAt) }}"\n`,
    );
    expect(() => loadMappingFile(file)).not.toThrow();
  });

  it('%settings.x the settings do not define, and a setting nothing reads', () => {
    const read = loadError(
      `${HEAD}settings:\n  evidenceIndx: true\noutput:\n  new:\n    resourceType: Basic\n    id: "{{ iif(%settings.evidenceIndex, 'a', 'b') }}"\n`,
    );
    expect(read.detail).toMatch(
      /reads %settings\.evidenceIndex, which the mapping's settings do not define \(they define: evidenceIndx\)/,
    );
    const unread = loadError(
      `${HEAD}settings:\n  evidenceIndex: true\n  evidenceIndx: false\noutput:\n  new:\n    resourceType: Basic\n    id: "{{ iif(%settings.evidenceIndex, 'a', 'b') }}"\n`,
    );
    expect(unread.detail).toMatch(/^settings\.evidenceIndx is read by nothing/);
    expect(unread.where).toMatch(/:7:3 \(settings\.evidenceIndx\)$/);
  });

  it('ROOT_MEMBERS is what buildVars makes, over every probe note', async () => {
    const { buildVars } = await import('./model.ts');
    const { hl7Vars } = await import('./hl7-vars.ts');
    const { ROOT_MEMBERS } = await import('./template.ts');
    const seen: Record<string, Set<string>> = {};
    for (const p of await probeNotes()) {
      const retraction = p.note.envelope.status === 'entered-in-error';
      const subject = retraction && p.prior ? p.prior : p.note;
      const vars = buildVars(
        subject,
        { id: 'm', version: '1', digest: 'd' },
        {},
        retraction ? p.note : undefined,
      );
      vars['hl7'] = hl7Vars(vars);
      for (const [k, v] of Object.entries(vars))
        if (v && typeof v === 'object' && !Array.isArray(v))
          for (const m of Object.keys(v)) {
            seen[k] ??= new Set();
            seen[k].add(m);
          }
    }
    for (const [root, members] of Object.entries(ROOT_MEMBERS))
      expect([...(seen[root] ?? [])].sort(), root).toEqual([...members].sort());
  });
});
