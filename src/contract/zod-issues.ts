import type { z } from 'zod';
import { type ErrorCode, type LocatedIssue, ScribeError } from '../errors.ts';
import { formatPath, type PathSegment } from './json.ts';

/**
 * Turns every zod issue into a located issue (JSON path, plus line:column when the source is known).
 * Messages are zod's, which describe types and allowed values — never the offending value itself,
 * so they are safe to log and to return.
 */
export function locatedIssues(
  error: z.ZodError,
  prefix: readonly PathSegment[] = [],
  locate?: (path: readonly PathSegment[]) => string | undefined,
): LocatedIssue[] {
  return error.issues.map((issue) => {
    const path = [...prefix, ...(issue.path as PathSegment[])];
    let message = issue.message;
    if (issue.code === 'unrecognized_keys')
      message = `unknown member(s) ${issue.keys.map((k) => JSON.stringify(k)).join(', ')}`;
    const loc = locate?.(path);
    return { where: `${formatPath(path)}${loc ? ` (${loc})` : ''}`, message };
  });
}

/** One ScribeError carrying all issues; its headline names the first and counts the rest. */
export function schemaError(code: ErrorCode, what: string, issues: LocatedIssue[]): ScribeError {
  const first = issues[0]!;
  const more =
    issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? 's' : ''})` : '';
  return new ScribeError(code, `${what}: ${first.message}${more}`, { where: first.where, issues });
}
