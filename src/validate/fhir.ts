/**
 * FHIR validation of what scribe-bridge emits: @medplum/core's validator against base R4 and the applicable
 * profiles, plus the checks Medplum leaves out (bindings.ts, extensions.ts, invariants.ts).
 *
 * Profiles applied, each in addition to base R4:
 * - DocumentReference → US Core `us-core-documentreference`; Provenance → US Core `us-core-provenance`
 *   (with the snapshot workaround of snapshot-fix.ts, without which Medplum 5.2.13 throws);
 * - every loaded profile a resource names in `meta.profile` — Medplum ignores `meta.profile` by itself.
 * A Bundle is validated itself (base R4 covers its entries) and each `entry.resource` is validated against
 * its profiles; issue paths stay rooted at the Bundle (`Bundle.entry[2].resource.recorded`).
 */
import { OperationOutcomeError, validateResource } from '@medplum/core';
import type { Bundle, Resource, StructureDefinition } from '@medplum/fhirtypes';
import { ScribeError } from '../errors.ts';
import { ensureBaseR4 } from './base-r4.ts';
import { checkBindings } from './bindings.ts';
import { checkDatatypeInvariants, checkProvenanceAgents } from './invariants.ts';
import { dedupe, eachResource, fromOutcome, type Issue, isError, OWN_CHECKS } from './issues.ts';
import { findStructureDefinition, type ProfileRegistry } from './profiles.ts';
import { usableProfile } from './snapshot-fix.ts';

export const US_CORE_DOCUMENT_REFERENCE =
  'http://hl7.org/fhir/us/core/StructureDefinition/us-core-documentreference';
export const US_CORE_PROVENANCE = 'http://hl7.org/fhir/us/core/StructureDefinition/us-core-provenance';

/** Profiles every resource of a type is validated against, whatever its meta.profile says. */
export const DEFAULT_PROFILES: Readonly<Record<string, readonly string[]>> = {
  DocumentReference: [US_CORE_DOCUMENT_REFERENCE],
  Provenance: [US_CORE_PROVENANCE],
};

/** Source label of issues from the base R4 run. */
export const BASE_R4 = 'base-r4';

export interface ValidateOptions {
  /** Largest base64Binary accepted, decoded (default 16 MiB; Medplum's own default is 1 MiB, while
   * US Core 9 requires servers to accept inline content of at least 5 MiB). */
  readonly base64BinaryMaxBytes?: number;
  /** Run bindings.ts and the extension checks (default true). */
  readonly bindings?: boolean;
  /** Run invariants.ts: data-type invariants, narrative rules, provenance-1 gaps (default true). */
  readonly invariants?: boolean;
  /**
   * Validate DocumentReference and Provenance against US Core 8 (default true; then the profiles must be
   * loaded). False validates against base R4 and `meta.profile` only — for a dry run without a profile folder.
   */
  readonly defaultProfiles?: boolean;
}

const DEFAULT_MAX_BASE64 = 16 * 1024 * 1024;

/**
 * Validates a resource (or a Bundle and its entries) and returns every issue found, errors and warnings,
 * without throwing for an invalid resource. Throws ScribeError when validation cannot run: a default
 * profile is not loaded, or the validator itself fails on a profile.
 */
export function validateFhir(
  resource: Resource,
  registry: ProfileRegistry,
  options: ValidateOptions = {},
): Issue[] {
  ensureBaseR4();
  const maxBytes = options.base64BinaryMaxBytes ?? DEFAULT_MAX_BASE64;
  const fullUrls = resource.resourceType === 'Bundle' ? typesByFullUrl(resource) : new Map<string, string>();
  const issues = eachResource(resource, (r, isEntry) => {
    // The Bundle's own base run already covers its entries against base R4.
    const out = isEntry ? [] : run(r, undefined, BASE_R4, maxBytes);
    for (const sd of profilesFor(r, registry, out, options)) {
      out.push(...run(r, sd, `${sd.url}|${sd.version ?? ''}`, maxBytes));
    }
    if (r.resourceType === 'Provenance' && (options.invariants ?? true)) {
      out.push(...checkProvenanceAgents(r, (url) => fullUrls.get(url)));
    }
    return out;
  });
  if (options.invariants ?? true) issues.push(...checkDatatypeInvariants(resource));
  if (options.bindings ?? true) issues.push(...checkBindings(resource, registry));
  return dedupe(resolveUrnReferences(issues, fullUrls));
}

const INVALID_REFERENCE = /^Invalid reference: got "(urn:[^"]+)", expected (.*)$/;

/**
 * Medplum takes a reference's type from the text before the first `/`, so every `urn:uuid:` reference of a
 * transaction or document Bundle draws an "Invalid reference" warning. Resolved through the Bundle's
 * `fullUrl`s, the warning is dropped when the target type is allowed and restated with that type when not.
 */
function resolveUrnReferences(issues: readonly Issue[], fullUrls: ReadonlyMap<string, string>): Issue[] {
  return issues.flatMap((issue) => {
    const m = INVALID_REFERENCE.exec(issue.message);
    const type = m ? fullUrls.get(m[1]!) : undefined;
    if (!m || !type) return [issue];
    const expected = [...m[2]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]!);
    if (expected.some((url) => url.endsWith(`/${type}`))) return [];
    return [{ ...issue, message: `Invalid reference: got "${type}" (${m[1]}), expected ${m[2]}` }];
  });
}

/**
 * Validates like validateFhir and throws a ScribeError listing every error (with its path) when there is
 * any; returns the warnings otherwise.
 */
export function assertValidFhir(
  resource: Resource,
  registry: ProfileRegistry,
  options?: ValidateOptions,
): Issue[] {
  const issues = validateFhir(resource, registry, options);
  const errors = issues.filter(isError);
  if (errors.length === 0) return issues;
  const first = errors[0]!;
  throw new ScribeError(
    'OUTPUT_INVALID',
    `the ${resource.resourceType} scribe-bridge built is not valid FHIR: ${errors.length} error(s), first: ${first.message}`,
    {
      where: first.path,
      hint: 'This is a mapping defect (or a profile mismatch); the item is parked. Report it with the listed issues.',
      issues: errors.map((e) => ({ where: e.path, message: `${e.message} [${e.source}]` })),
    },
  );
}

/** The profiles that apply to one resource; unknown meta.profile entries become warnings in `out`. */
function profilesFor(
  r: Resource,
  registry: ProfileRegistry,
  out: Issue[],
  options: ValidateOptions,
): StructureDefinition[] {
  const found = new Map<string, StructureDefinition>();
  for (const url of options.defaultProfiles === false ? [] : (DEFAULT_PROFILES[r.resourceType] ?? [])) {
    const sd = findStructureDefinition(registry, url);
    if (!sd) {
      throw new ScribeError(
        'PROFILES_INVALID',
        `the profile ${url} is not loaded, so ${r.resourceType} cannot be validated`,
        {
          hint: 'Add the US Core 8 package (with snapshots) to the FHIR profile directories.',
        },
      );
    }
    found.set(sd.url, sd);
  }
  for (const url of r.meta?.profile ?? []) {
    const sd = findStructureDefinition(registry, url);
    const where = `${r.resourceType}.meta.profile`;
    if (!sd) {
      out.push(
        own('warning', 'not-supported', `Profile ${url} is not loaded; not validated against it`, where),
      );
    } else if (sd.type !== r.resourceType) {
      out.push(own('error', 'invalid', `Profile ${url} is for ${sd.type}, not ${r.resourceType}`, where));
    } else {
      found.set(sd.url, sd);
    }
  }
  return [...found.values()];
}

function own(severity: Issue['severity'], code: string, message: string, path: string): Issue {
  return { severity, code, message, path, source: OWN_CHECKS };
}

/** One Medplum run; an OperationOutcomeError carries the issues, anything else is a validator failure. */
function run(r: Resource, sd: StructureDefinition | undefined, source: string, maxBytes: number): Issue[] {
  const profile = sd ? usableProfile(sd) : undefined;
  try {
    const warnings = validateResource(r, { ...(profile ? { profile } : {}), base64BinaryMaxBytes: maxBytes });
    return fromOutcome(warnings, source);
  } catch (e) {
    if (e instanceof OperationOutcomeError) return fromOutcome(e.outcome.issue ?? [], source);
    throw new ScribeError('INTERNAL', `the FHIR validator failed on ${source}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

function typesByFullUrl(bundle: Bundle): Map<string, string> {
  const map = new Map<string, string>();
  for (const entry of bundle.entry ?? []) {
    if (entry.fullUrl && entry.resource?.resourceType) map.set(entry.fullUrl, entry.resource.resourceType);
  }
  return map;
}
