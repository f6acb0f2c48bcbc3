/**
 * The FHIR R4 narrative rules Medplum does not check: the `div` root in the XHTML namespace, txt-1 (only
 * basic HTML formatting, no scripts, forms, frames, objects or event handlers) and txt-2 (some
 * non-whitespace content). Medplum accepts `<script>` and a `div` without namespace (verified).
 *
 * This is a conservative scan of tags and attributes, not an XHTML parser: it rejects every element not on
 * the R4 list of permitted elements, `on*` attributes and `javascript:` URLs. Our own narratives are
 * generated from escaped text, so a parser would add weight without catching more in practice.
 */

/** Elements R4 permits in narrative (FHIR R4 narrative.html, HTML 4.0 chapters 7–11 and 15, a, img). */
const ALLOWED = new Set(
  (
    'a abbr acronym b big blockquote br caption cite code col colgroup dd dfn div dl dt em ' +
    'h1 h2 h3 h4 h5 h6 hr i img li ol p pre q samp small span strong sub sup table tbody td tfoot th thead ' +
    'tr tt ul var'
  ).split(' '),
);

const ROOT =
  /^\s*<div(?=[\s>/])[^>]*\sxmlns\s*=\s*(["'])http:\/\/www\.w3\.org\/1999\/xhtml\1[^>]*>[\s\S]*<\/div>\s*$/;
const TAG = /<\s*(\/?)\s*([A-Za-z][A-Za-z0-9:-]*)([^>]*)>/g;
const EVENT_ATTRIBUTE = /(?:^|\s)on[a-z]+\s*=/i;
const SCRIPT_URL = /(?:href|src)\s*=\s*(["']?)\s*(?:javascript|vbscript):/i;

const TXT_1 =
  'The narrative SHALL contain only the basic html formatting elements and attributes described in chapters 7-11 (except section 4 of chapter 9) and 15 of the HTML 4.0 standard, <a> elements (either name or href), images and internally contained style attributes';
const TXT_2 = 'The narrative SHALL have some non-whitespace content';

/** Problems with a Narrative.div, each a message in the validator's "Constraint … not met" style. */
export function narrativeProblems(div: string): string[] {
  const problems: string[] = [];
  const body = div.replace(/<!--[\s\S]*?-->/g, '');
  if (!ROOT.test(body)) {
    problems.push('Narrative div must be a <div xmlns="http://www.w3.org/1999/xhtml"> element');
  }
  const bad = new Set<string>();
  for (const m of body.matchAll(TAG)) {
    const name = m[2]!.toLowerCase();
    const attributes = m[3] ?? '';
    if (!ALLOWED.has(name)) bad.add(`<${name}>`);
    if (m[1] === '' && EVENT_ATTRIBUTE.test(attributes)) bad.add(`an event-handler attribute on <${name}>`);
    if (m[1] === '' && SCRIPT_URL.test(attributes)) bad.add(`a script URL on <${name}>`);
  }
  if (bad.size > 0) problems.push(`Constraint txt-1 not met: ${TXT_1} (found ${[...bad].join(', ')})`);
  const text = body.replace(TAG, '').replace(/&nbsp;|&#160;|&#xa0;/gi, ' ');
  if (text.trim() === '' && !/<\s*img\b/i.test(body)) problems.push(`Constraint txt-2 not met: ${TXT_2}`);
  return problems;
}
