/**
 * Reads the configuration YAML keeping positions, so every problem can name `file:line:column (path)`.
 */
import { isMap, isPair, isScalar, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import { formatPath, type PathSegment } from '../contract/json.ts';
import type { LocatedIssue } from '../errors.ts';

/** A parsed config file: its plain value and a way to name where a path is. */
export interface YamlSource {
  readonly value: unknown;
  /** `file:line:column (path)` of `path`, or of its nearest ancestor that exists in the file. */
  locate(path: readonly PathSegment[]): string;
  /** YAML syntax problems (duplicate keys included); when any, `value` is not to be trusted. */
  readonly syntaxProblems: readonly LocatedIssue[];
}

/** `destinations[1].port`, or `top level` for the root. */
export function formatConfigPath(path: readonly PathSegment[]): string {
  return formatPath(path).replace(/^\$\.?/, '') || 'top level';
}

/** Parses `text` (the content of `file`, which is only used to name places). */
export function parseConfigYaml(text: string, file: string): YamlSource {
  const lineCounter = new LineCounter();
  // uniqueKeys: a key given twice is an error, never "the last one wins".
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: false });
  const at = (offset: number) => {
    const p = lineCounter.linePos(offset);
    return `${file}:${p.line}:${p.col}`;
  };
  const syntaxProblems = doc.errors.map((e) => ({
    where: at(e.pos[0]),
    message: `not valid YAML: ${e.message.split('\n')[0]!}`,
  }));

  const position = (path: readonly PathSegment[]): string => {
    for (let n = path.length; n > 0; n--) {
      const parent = doc.getIn(path.slice(0, n - 1), true);
      // A member is shown at its key: that is where a reader looks, and where an unknown key is.
      if (isMap(parent)) {
        const pair = parent.items.find(
          (it) => isPair(it) && isScalar(it.key) && String(it.key.value) === String(path[n - 1]),
        );
        const range = pair && isScalar(pair.key) ? pair.key.range : undefined;
        if (range) return at(range[0]);
        continue;
      }
      const node = doc.getIn(path.slice(0, n), true) as YamlNode | undefined;
      if (node && typeof node === 'object' && 'range' in node && node.range) return at(node.range[0]);
    }
    const root = doc.contents as YamlNode | null;
    return at(root?.range?.[0] ?? 0);
  };

  let value: unknown;
  if (syntaxProblems.length === 0) {
    try {
      // The alias cap refuses "billion laughs" documents instead of expanding them.
      value = doc.toJS({ maxAliasCount: 100 });
    } catch (e) {
      syntaxProblems.push({ where: at(0), message: `not valid YAML: ${(e as Error).message}` });
    }
  }
  return {
    value,
    locate: (path) => `${position(path)} (${formatConfigPath(path)})`,
    syntaxProblems,
  };
}
