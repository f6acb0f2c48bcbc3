/** The FHIR profiles tests validate against: ../shared/reference/profiles (never copied into the project). */
import { Conformance } from '../../src/validate/conformance.ts';
import { loadProfiles, type ProfileRegistry } from '../../src/validate/profiles.ts';

export const SHARED_PROFILES = new URL('../../../shared/reference/profiles/', import.meta.url);

let registry: Promise<ProfileRegistry> | undefined;

export function testRegistry(): Promise<ProfileRegistry> {
  registry ??= loadProfiles([SHARED_PROFILES]);
  return registry;
}

export async function testConformance(): Promise<Conformance> {
  return new Conformance(await testRegistry());
}
