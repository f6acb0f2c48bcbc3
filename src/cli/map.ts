import { rename, rm, writeFile } from 'node:fs/promises';
import { delimiter, dirname, resolve } from 'node:path';
import { ScribeError } from '../errors.ts';
import { render } from '../map/engine.ts';
import { MappingRegistry } from '../map/registry.ts';
import { Conformance } from '../validate/conformance.ts';
import { loadProfiles } from '../validate/profiles.ts';
import type { Io } from './io.ts';
import { keysFromOption, noteWithPrior } from './notes.ts';

/** `--profiles` folders, else SCRIBE_BRIDGE_PROFILES (path-separated), else none (base R4 + our own). */
export function profileFolders(option: readonly string[] | undefined): string[] {
  if (option?.length) return [...option];
  const env = process.env['SCRIBE_BRIDGE_PROFILES'];
  return env ? env.split(delimiter).filter(Boolean) : [];
}

export interface MapOptions {
  profiles?: string[];
  mapping: string;
  out?: string;
  keys?: string;
  prior?: string;
  rendering?: string[];
}

/**
 * Writes a file atomically: a temporary file in the same folder, then a rename. A path that cannot be written
 * (no such folder, a folder, no permission) is FILE_UNWRITABLE, naming the path; the temporary file is removed.
 */
export async function writeAtomic(path: string, data: string | Uint8Array): Promise<void> {
  const tmp = resolve(dirname(path), `.${Date.now().toString(36)}-${process.pid}.tmp`);
  try {
    await writeFile(tmp, data);
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => undefined);
    const code = (e as NodeJS.ErrnoException).code ?? 'error';
    const why =
      code === 'ENOENT'
        ? 'its folder does not exist'
        : code === 'EISDIR'
          ? 'it is a folder'
          : code === 'EACCES' || code === 'EPERM'
            ? 'permission denied'
            : code;
    throw new ScribeError('FILE_UNWRITABLE', `cannot write the output file (${why})`, { where: path });
  }
}

export async function mapCommand(envelopePath: string, opts: MapOptions, io: Io): Promise<number> {
  const { note, prior } = await noteWithPrior(envelopePath, await keysFromOption(opts.keys), opts.prior);
  const mapping = new MappingRegistry().get(opts.mapping);
  if (opts.rendering?.length && mapping.format !== 'fhir') {
    // An HL7 mapping carries the renderings its template names (the plain text in OBX): there is none to choose,
    // as an MLLP destination has none either.
    throw new ScribeError(
      'MAPPING_UNSUPPORTED',
      `--rendering chooses the text renderings of a FHIR mapping; ${mapping.id} is ${mapping.format} and carries its own`,
      { where: '--rendering', hint: 'Leave out --rendering for this mapping.' },
    );
  }
  const rendering = render(mapping, {
    note,
    ...(prior ? { prior } : {}),
    options: opts.rendering?.length ? { renderings: opts.rendering } : {},
  });
  const profileDirs = profileFolders(opts.profiles);
  const conformance = new Conformance(await loadProfiles(profileDirs));
  conformance.validateFull(rendering);
  if (!conformance.hasUsCore && rendering.format === 'fhir') {
    io.err(
      'note: validated against base FHIR R4 and scribe-bridge profiles only; give --profiles <folder with US Core 8> to validate against US Core too\n',
    );
  }
  if (opts.out) {
    await writeAtomic(opts.out, rendering.body);
    io.err(
      `wrote ${opts.out}: ${rendering.mapping.id} ${rendering.mapping.version} ${rendering.mode}, ${Buffer.byteLength(rendering.body)} bytes, sha256 ${rendering.sha256}${note.signature.verified ? '' : ' (signature not checked: no --keys)'}\n`,
    );
  } else {
    io.out(rendering.body);
    if (!rendering.body.endsWith('\r') && !rendering.body.endsWith('\n')) io.out('\n');
  }
  return 0;
}
