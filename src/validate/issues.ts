/**
 * The one issue shape every check in src/validate returns: Medplum's validator issues are converted to it,
 * and our own checks (bindings, extensions, invariants) produce it directly, in the same wording style, so a
 * caller sees one list.
 */
import type { OperationOutcomeIssue, Resource } from '@medplum/fhirtypes';

/** One validation finding. */
export interface Issue {
  readonly severity: 'fatal' | 'error' | 'warning' | 'information';
  /** A FHIR IssueType code (http://hl7.org/fhir/issue-type): structure, invariant, code-invalid, … */
  readonly code: string;
  /** What is wrong, in words (Medplum's `details.text` for its own issues). */
  readonly message: string;
  /**
   * Where: the OperationOutcome `expression`, a FHIRPath-like path with indices rooted at the validated
   * resource, e.g. `DocumentReference.content[0].attachment` or `Bundle.entry[2].resource.recorded`.
   */
  readonly path: string;
  /** Which rule set found it: `base-r4`, a profile canonical (`url|version`), or `scribe-bridge`. */
  readonly source: string;
}

/** Source label for checks scribe-bridge performs itself. */
export const OWN_CHECKS = 'scribe-bridge';

/** True for issues that make a resource invalid. */
export function isError(issue: Issue): boolean {
  return issue.severity === 'error' || issue.severity === 'fatal';
}

/** Converts Medplum OperationOutcome issues. */
export function fromOutcome(issues: readonly OperationOutcomeIssue[], source: string): Issue[] {
  return issues.map((i) => ({
    severity: i.severity,
    code: i.code,
    message: i.details?.text ?? i.diagnostics ?? 'validation failed',
    path: i.expression?.[0] ?? '',
    source,
  }));
}

/**
 * Rewrites paths rooted at a resource (`Provenance.agent[0]`) to be rooted elsewhere
 * (`Bundle.entry[3].resource.agent[0]`), for issues found on a Bundle entry validated on its own.
 */
export function rebase(issues: readonly Issue[], resourceType: string, prefix: string): Issue[] {
  if (prefix === resourceType) return [...issues];
  return issues.map((i) =>
    i.path === resourceType || i.path.startsWith(`${resourceType}.`)
      ? { ...i, path: prefix + i.path.slice(resourceType.length) }
      : i,
  );
}

/**
 * Drops repeats: the base run and a profile run report the same base problems, with the same message and
 * path. The first occurrence (and its source) is kept.
 */
export function dedupe(issues: readonly Issue[]): Issue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.severity}\u0000${i.code}\u0000${i.message}\u0000${i.path}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

/**
 * Calls `check` on the resource, or, for a Bundle, on the Bundle and then on each `entry.resource`
 * (`isEntry` true), and returns all issues with paths rooted at the outer resource.
 */
export function eachResource(resource: Resource, check: (r: Resource, isEntry: boolean) => Issue[]): Issue[] {
  return walk(resource, false, check);
}

function walk(
  resource: Resource,
  isEntry: boolean,
  check: (r: Resource, isEntry: boolean) => Issue[],
): Issue[] {
  const out = check(resource, isEntry);
  if (resource.resourceType === 'Bundle') {
    (resource.entry ?? []).forEach((entry, i) => {
      const inner = entry.resource;
      if (!inner?.resourceType) return;
      out.push(...rebase(walk(inner, true, check), inner.resourceType, `Bundle.entry[${i}].resource`));
    });
  }
  return out;
}

/** A value for a message: JSON-quoted and cut short, so a stray long value cannot flood a log line. */
export function show(value: unknown): string {
  const s = JSON.stringify(value) ?? String(value);
  return s.length > 60 ? `${s.slice(0, 57)}…` : s;
}
