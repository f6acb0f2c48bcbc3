/**
 * The auditor's page end to end in headless Chromium (Debian's /usr/bin/chromium driven by playwright-core):
 * a real service with delivered notes serves the page; the test enters the auditor token, searches by the
 * MSH-10 the MLLP receiver got, and chooses sentences: the highlighted transcript segments must be exactly the
 * sentence's evidence (compared with the fixture envelope and its transcript file), with their speaker and audio
 * times. The static page carries no PHI, the token stays in sessionStorage, and the operator role gets 403.
 *
 * Screenshots go to a temp folder; `SB_UPDATE_SCREENSHOTS=1` writes them to docs/ (commit those once).
 */
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BrowserContext, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTraceWorld, TRACE_TOKENS, type TraceWorld } from './support/trace-harness.ts';

const CHROMIUM = '/usr/bin/chromium';
const DOCS = new URL('../docs/', import.meta.url).pathname;

let w: TraceWorld;
let browser: BrowserContext;
let page: Page;
let profile: string;
let shots: string;

beforeAll(async () => {
  [w] = await Promise.all([startTraceWorld('pglite', ['hp-typical.json', 'hp-typical.r2-amended.json'])]);
  profile = mkdtempSync(join(tmpdir(), 'sb-chromium-'));
  shots = process.env['SB_UPDATE_SCREENSHOTS'] === '1' ? DOCS : mkdtempSync(join(tmpdir(), 'sb-shots-'));
  // A fresh profile per run (launchPersistentContext is how playwright takes --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    viewport: { width: 1400, height: 1000 },
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  page = browser.pages()[0] ?? (await browser.newPage());
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await w?.close();
  rmSync(profile, { recursive: true, force: true });
  if (shots !== DOCS) rmSync(shots, { recursive: true, force: true });
});

const fmt = (s: number) => {
  const m = Math.floor(s / 60);
  return `${String(m).padStart(2, '0')}:${(s - m * 60).toFixed(2).padStart(5, '0')}`;
};

describe("the auditor's page", () => {
  it('serves static assets without PHI and without a token', async () => {
    const html = await (await fetch(`${w.service.url}/audit/`)).text();
    const js = await (await fetch(`${w.service.url}/audit/app.js`)).text();
    expect(html).toContain('provenance trace');
    const env = w.notes[0]!.sent as { patient: { name: { family: string } }; noteId: string };
    for (const text of [html, js]) {
      expect(text).not.toContain(env.patient.name.family);
      expect(text).not.toContain(env.noteId);
    }
  });

  it('shows a traced note; choosing a sentence highlights exactly its evidence', async () => {
    const r2 = w.notes.find((n) => n.revision === 2)!;
    const message = w.mllp.received.find((m) => m.raw.includes('MDM^T10'))!;
    await page.goto(`${w.service.url}/audit`);
    await page.fill('#token', TRACE_TOKENS.auditor);
    await page.click('#token-save');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    expect(await page.evaluate(() => localStorage.length)).toBe(0);
    await page.selectOption('#kind', 'controlId');
    await page.fill('#destination', 'ehr-mdm');
    await page.fill('#value', message.controlId);
    await page.click('#search-button');
    await page.waitForSelector('#note .sentence');

    // The note sentence by sentence, each marked by its edit class, for the revision the MSH-10 belongs to.
    const sentences = (
      r2.fixture.note as {
        sections: { sentences: { id: string; text: string; evidence: string[]; draft?: unknown }[] }[];
      }
    ).sections.flatMap((s) => s.sentences);
    const shown = await page.$$eval('#note .sentence', (els) =>
      els.map((e) => ({
        id: (e as HTMLElement).dataset['sentenceId'],
        editClass: (e as HTMLElement).dataset['editClass'],
      })),
    );
    expect(shown.map((s) => s.id)).toEqual(sentences.map((s) => s.id));
    for (const [i, s] of sentences.entries()) {
      expect(shown[i]!.editClass === 'clinician-added').toBe(s.draft === undefined);
      expect(shown[i]!.editClass).toMatch(/^(ai-verbatim|clinician-edited|clinician-added)$/);
    }
    expect(await page.$$eval('#legend li', (els) => els.map((e) => e.textContent))).toEqual([
      'AI verbatim',
      'clinician edited',
      'clinician added',
      'draft sentence removed',
    ]);
    expect(await page.textContent('#revisions [aria-pressed="true"]')).toBe('r2 amended');

    // Choose sentences: the one with the most evidence, one with the fewest, and one with none.
    const segments = new Map(r2.transcript.Conversation.TranscriptSegments.map((s) => [s.SegmentId, s]));
    const most = [...sentences].sort((a, b) => b.evidence.length - a.evidence.length)[0]!;
    const single = [...sentences]
      .filter((s) => s.evidence.length > 0)
      .sort((a, b) => a.evidence.length - b.evidence.length)[0]!;
    const none = sentences.find((s) => s.evidence.length === 0);
    for (const s of [single, ...(none ? [none] : []), most]) {
      await page.click(`#note .sentence[data-sentence-id="${s.id}"]`);
      const highlighted = await page.$$eval('#transcript .segment.highlight', (els) =>
        els.map((e) => ({
          id: (e as HTMLElement).dataset['segmentId'],
          role: e.querySelector('.role')!.textContent,
          time: e.querySelector('.time')!.textContent,
          content: e.querySelector('.content')!.textContent,
        })),
      );
      expect(new Set(highlighted.map((h) => h.id))).toEqual(new Set(s.evidence));
      expect(highlighted).toHaveLength(new Set(s.evidence).size);
      for (const h of highlighted) {
        const seg = segments.get(h.id!)!;
        expect(h).toEqual({
          id: seg.SegmentId,
          role: seg.ParticipantDetails.ParticipantRole,
          time: `${fmt(seg.BeginAudioTime)}–${fmt(seg.EndAudioTime)}`,
          content: seg.Content,
        });
      }
    }
    // The whole transcript is shown for context.
    expect(await page.$$eval('#transcript .segment', (els) => els.length)).toBe(segments.size);

    // Deliveries as a timeline with receipts; signature and hash checks, all passed.
    const deliveries = await page.$$eval('#deliveries .delivery', (els) =>
      els.map((e) => ({
        destination: (e as HTMLElement).dataset['destination'],
        status: (e as HTMLElement).dataset['status'],
        attempts: e.querySelectorAll('.attempt.outcome-delivered').length,
        text: e.textContent,
      })),
    );
    expect(deliveries.map((d) => [d.destination, d.status, d.attempts])).toEqual([
      ['ehr-fhir', 'delivered', 1],
      ['ehr-mdm', 'delivered', 1],
    ]);
    expect(deliveries[1]!.text).toContain(`MSH-10 ${message.controlId}`);
    expect(deliveries[0]!.text).toMatch(/receipt DocumentReference\/[\w-]+\/_history\/[\w-]+/);
    const checks = await page.$$eval('#checks .check', (els) =>
      els.map((e) => (e as HTMLElement).dataset['ok']),
    );
    expect(checks.length).toBeGreaterThanOrEqual(6);
    expect(checks.every((ok) => ok === 'true')).toBe(true);

    // For the pictures: a clinician-edited sentence near the top, chosen.
    const edited = shown.find((x) => x.editClass === 'clinician-edited')!;
    await page.click(`#note .sentence[data-sentence-id="${edited.id}"]`);
    expect(await page.textContent('#evidence-summary')).toContain(`${edited.id} · clinician-edited`);
    await page.evaluate(() => window.scrollTo(0, document.getElementById('revisions')!.offsetTop - 8));
    await page.screenshot({ path: join(shots, 'auditor-page.png'), fullPage: false });
    await page.locator('#deliveries').screenshot({ path: join(shots, 'auditor-page-deliveries.png') });
    expect(statSync(join(shots, 'auditor-page.png')).size).toBeGreaterThan(10_000);

    // Every view was audited, as the auditor, from the page.
    const [read] = await w.service.ledger.db.query<{ actor: string; details: { format?: string } }>(
      `select actor, details from audit_log where action = 'read.phi' order by seq desc limit 1`,
    );
    expect(read!.actor).toMatch(/^auditor:[0-9a-f]{12}$/);
    expect(read!.details.format).toBe('html');
  });

  it('shows the refusal for the operator role, and forgets the token', async () => {
    await page.click('#token-forget');
    expect(await page.evaluate(() => sessionStorage.length)).toBe(0);
    await page.fill('#token', TRACE_TOKENS.operator);
    await page.click('#token-save');
    await page.selectOption('#kind', 'note');
    await page.fill('#tenant', 'riverside-clinic');
    await page.fill('#noteId', 'enc-4471-hp');
    await page.click('#search-button');
    await page.waitForSelector('#message.error');
    expect(await page.textContent('#message')).toMatch(/^403 FORBIDDEN/);
    expect(await page.isHidden('#result')).toBe(true);
    expect(existsSync(profile)).toBe(true);
  });
});
