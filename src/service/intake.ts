/**
 * The intake step both entry points share (SQS and, later, `POST /v1/notes`): verify the envelope against its
 * tenant's review keys and the artifacts, render it for every destination of the tenant with the mapping version
 * proven conformant, check each rendering, and record revision + renderings + deliveries + audit in ONE ledger
 * transaction. Its result is durable when it resolves — which is when the SQS consumer may delete the message.
 * Concurrent ingests are group-committed: one transaction records a batch of them (still each revision with its
 * renderings, deliveries and audit), and every caller is resolved only after that commit.
 */
import { createHash } from 'node:crypto';
import type { Config, DestinationConfig } from '../config/index.ts';
import type { JobLocator, ObjectStore } from '../contract/artifacts.ts';
import { readEnvelope } from '../contract/envelope.ts';
import { type Jwks, loadJwksFile, parseJwks } from '../contract/signature.ts';
import { type VerifiedNote, verifyEnvelope } from '../contract/verify.ts';
import { type HttpExchange, HttpTransport } from '../deliver/fhir-http.ts';
import { planWrite } from '../deliver/fhir-request.ts';
import { ScribeError, toScribeError } from '../errors.ts';
import { auditVerificationFailure } from '../ledger/audit.ts';
import type { Ledger } from '../ledger/ledger.ts';
import { revisionInput } from '../ledger/ledger.ts';
import type { DestinationIdentifier, RecordResult, RenderingInput, RevisionInput } from '../ledger/types.ts';
import { lifecycleMode, type Rendering, render } from '../map/engine.ts';
import type { Mapping } from '../map/mapping-file.ts';
import type { MappingRegistry } from '../map/registry.ts';
import type { Conformance } from '../validate/conformance.ts';
import type { ActiveMappings } from './active-mappings.ts';
import { CpuTurns } from './cpu-turns.ts';
import { GroupCommit } from './group-commit.ts';

export interface IntakeDeps {
  readonly config: Config;
  readonly ledger: Ledger;
  readonly mappings: MappingRegistry;
  readonly conformance: Conformance;
  /**
   * The service's proven mapping per destination, reloaded while it runs (./active-mappings.ts). Without it
   * (tests), each note takes its mapping from `mappings` and proves it on first use.
   */
  readonly activeMappings?: ActiveMappings;
  readonly objectStore?: ObjectStore;
  readonly jobLocator?: JobLocator;
  /** Called after each commit that recorded revisions (the in-process delivery workers claim at once). */
  readonly onRecorded?: () => void;
  /** Transactions in flight at once for group commit (default 1; 2 suits PostgreSQL). */
  readonly commitsInFlight?: number;
  /** Envelopes verified and rendered at once (default 4); the others wait, first come first served, as bytes. */
  readonly verifyingAtOnce?: number;
  /** The clock of the review-key cache (tests step it); default Date.now. */
  readonly now?: () => number;
  /** The transport a tenant's JWKS URL is fetched with (tests give one trusting their own CA). */
  readonly keysTransport?: () => HttpTransport;
}

/** The identifiers a destination receives, for the trace: FHIR identifiers, or MDM's TXA-12.1 and MSH-10. */
export function identifiersOf(r: Rendering): DestinationIdentifier[] {
  if (r.format === 'hl7v2') {
    const segments = r.body.split('\r');
    const msh = segments[0]?.split('|') ?? [];
    const txa = segments.find((s) => s.startsWith('TXA|'))?.split('|') ?? [];
    return [{ documentNumber: txa[12]?.split('^')[0] ?? '', controlId: msh[9] ?? '' }];
  }
  const out: DestinationIdentifier[] = [];
  const add = (id: unknown) => {
    for (const i of Array.isArray(id) ? id : id ? [id] : []) {
      const { system, value } = i as { system?: unknown; value?: unknown };
      if (
        typeof system === 'string' &&
        typeof value === 'string' &&
        !out.some((o) => 'system' in o && o.system === system && o.value === value)
      ) {
        out.push({ system, value });
      }
    }
  };
  const res = r.value as {
    resourceType?: string;
    identifier?: unknown;
    entry?: Array<{ resource?: { resourceType?: string; identifier?: unknown } }>;
  };
  add(res.identifier);
  for (const e of res.entry ?? [])
    if (e.resource?.resourceType === 'DocumentReference' || e.resource?.resourceType === 'Composition')
      add(e.resource.identifier);
  return out;
}

/** How long fetching a tenant's JWKS may take, ms. */
const JWKS_TIMEOUT_MS = 10_000;
/** Keys are read again after this long (a removed key stops verifying within it), ms. */
const KEYS_MAX_AGE_MS = 10 * 60_000;
/** An unknown key id reads the keys again, at most this often per tenant, ms. */
const KEYS_REFRESH_COOLDOWN_MS = 30_000;

/**
 * Review keys per tenant, from a file or an https URL: cached, read again when 10 minutes old and (at most every
 * 30 s) when a signature names a key id they lack.
 */
export class TenantKeys {
  readonly #config: Pick<Config, 'tenants'>;
  readonly #cache = new Map<string, { readonly keys: Promise<Jwks>; readonly at: number }>();
  /** The transport a JWKS URL is fetched with (tests give one trusting their own CA). */
  readonly #transport: () => HttpTransport;
  readonly #now: () => number;

  constructor(
    config: Pick<Config, 'tenants'>,
    transport: () => HttpTransport = () => new HttpTransport(),
    now: () => number = Date.now,
  ) {
    this.#config = config;
    this.#transport = transport;
    this.#now = now;
  }

  /** The tenant's keys: cached, and read again once they are older than KEYS_MAX_AGE_MS (a key may be revoked). */
  get(tenant: string): Promise<Jwks> {
    const c = this.#cache.get(tenant);
    if (c && this.#now() - c.at < KEYS_MAX_AGE_MS) return c.keys;
    return this.#reload(tenant);
  }

  /**
   * After a signature named a key id the cached keys lack: the review application may have rotated its key, so
   * the keys are read again. A file is read again every time (local and cheap); a JWKS URL at most once per
   * KEYS_REFRESH_COOLDOWN_MS per tenant, so a flood of unknown key ids cannot hammer its host — within the cooldown
   * the answer is `'cooldown'`: the keys were not read, so the key id cannot be called unknown yet.
   */
  refresh(tenant: string): Promise<Jwks> | 'cooldown' {
    const c = this.#cache.get(tenant);
    const url = this.#config.tenants.find((x) => x.id === tenant)?.reviewKeys.kind === 'url';
    if (url && c && this.#now() - c.at < KEYS_REFRESH_COOLDOWN_MS) return 'cooldown';
    return this.#reload(tenant);
  }

  #reload(tenant: string): Promise<Jwks> {
    const keys = this.#load(tenant);
    const entry = { keys, at: this.#now() };
    this.#cache.set(tenant, entry);
    keys.catch(() => {
      if (this.#cache.get(tenant) === entry) this.#cache.delete(tenant);
    });
    return keys;
  }

  async #load(tenant: string): Promise<Jwks> {
    const t = this.#config.tenants.find((x) => x.id === tenant);
    if (!t)
      throw new ScribeError('KEY_UNKNOWN', `tenant ${JSON.stringify(tenant)} is not configured here`, {
        where: '$.tenant',
        hint: 'Send the note to the deployment that serves this tenant, or add the tenant (its review keys and destinations) to the configuration.',
      });
    if (t.reviewKeys.kind === 'file') return loadJwksFile(t.reviewKeys.path);
    // Through the delivery transport, so the egress guard (src/config/egress.ts) applies at connection time too.
    const http = this.#transport();
    let ex: HttpExchange;
    try {
      ex = await http.exchange({
        method: 'GET',
        url: new URL(t.reviewKeys.url),
        headers: { accept: 'application/json' },
        timeoutMs: JWKS_TIMEOUT_MS,
      });
    } finally {
      http.close();
    }
    if (ex.kind === 'failed')
      throw new ScribeError('ARTIFACT_UNAVAILABLE', `the tenant JWKS URL did not answer (${ex.errorCode})`, {
        where: t.reviewKeys.url,
      });
    if (ex.status < 200 || ex.status > 299)
      throw new ScribeError('ARTIFACT_UNAVAILABLE', `the tenant JWKS URL answered ${ex.status}`, {
        where: t.reviewKeys.url,
      });
    let json: unknown;
    try {
      json = JSON.parse(ex.body);
    } catch {
      throw new ScribeError('ARTIFACT_UNAVAILABLE', 'the tenant JWKS URL did not answer with JSON', {
        where: t.reviewKeys.url,
      });
    }
    return parseJwks(json, 'the tenant JWKS URL');
  }
}

function renderOptions(d: DestinationConfig): Record<string, unknown> {
  const o: Record<string, unknown> = { destination: d.id };
  if (d.type === 'fhir' && d.renderings) o['renderings'] = d.renderings;
  if (d.type === 'fhir') o['write'] = d.write;
  if (d.type === 'mllp') {
    for (const k of [
      'sendingApplication',
      'sendingFacility',
      'receivingApplication',
      'receivingFacility',
    ] as const) {
      if (d[k]) o[k] = d[k];
    }
  }
  return o;
}

export class Intake {
  readonly #d: IntakeDeps;
  readonly #keys: TenantKeys;
  /** Concurrent ingests share one ledger transaction (see group-commit.ts); each resolves after its commit. */
  readonly #commits: GroupCommit<RevisionInput, RecordResult>;
  /**
   * Verification and rendering are CPU work with a few awaits (keys, artifact fetches). Started all at once, a
   * backlog of posts would each hold its fetched and parsed HealthScribe files (~0.5 MB of bytes, several MB
   * parsed) while they share the CPU — peak memory grows with the backlog and every note finishes late. A few at
   * a time keeps the awaits overlapped and the rest waiting as their request bytes.
   */
  readonly #slots: { free: number; readonly waiting: (() => void)[] };
  /** Intake's CPU stages take turns with the event loop's I/O (./cpu-turns.ts). */
  readonly #cpu = new CpuTurns();

  constructor(deps: IntakeDeps) {
    this.#d = deps;
    this.#keys = new TenantKeys(deps.config, deps.keysTransport, deps.now);
    this.#slots = { free: Math.max(1, deps.verifyingAtOnce ?? 4), waiting: [] };
    const recorded = <T>(r: T): T => {
      try {
        deps.onRecorded?.();
      } catch {
        // a wake-up hint only: the commit stands, and the workers' poll finds the work anyway
      }
      return r;
    };
    this.#commits = new GroupCommit({
      commitBatch: (inputs) => deps.ledger.recordRevisions(inputs).then(recorded),
      commitOne: (input) => deps.ledger.recordRevision(input).then(recorded),
      maxBatch: 32,
      maxInFlight: deps.commitsInFlight ?? 1,
    });
  }

  /** Verifies, renders and records one envelope. Throws ScribeError (its disposition tells the caller what to do). */
  async ingest(
    bytes: Uint8Array,
    source: 'sqs' | 'http',
    opts: { allowTenant?: (tenant: string) => boolean } = {},
  ): Promise<RecordResult> {
    let tenant: string | undefined;
    let note: VerifiedNote;
    let renderings: RenderingInput[] | undefined;
    await this.#slot();
    try {
      await this.#cpu.turn();
      const read = readEnvelope(bytes);
      tenant = read.envelope.tenant;
      if (opts.allowTenant && !opts.allowTenant(read.envelope.tenant)) {
        throw new ScribeError('FORBIDDEN', 'this token may not submit notes for that tenant', {
          where: '$.tenant',
        });
      }
      note = await this.#verify(read);
      renderings = await this.#renderAll(note);
    } catch (e) {
      this.#release();
      await this.#auditRefusal(e, bytes, source, tenant);
      throw e;
    }
    this.#release();
    const input = revisionInput(note, source, renderings ?? []);
    // A retraction whose revision has not arrived: recorded as waiting, rendered once that revision is here.
    return this.#commits.submit(renderings ? input : { ...input, renderPending: true });
  }

  /**
   * Renders what was recorded unrendered (early retractions) now that the revision each retracts is here, and
   * attaches the renderings (see Ledger.attachRenderings). One whose rendering is refused for good is
   * dead-lettered with the code; a transient failure is tried again next time. Resolves with how many it placed.
   */
  async renderPending(): Promise<number> {
    let placed = 0;
    for (const p of await this.#d.ledger.pendingRenders()) {
      try {
        const note = await this.#verifyStored(p.envelope, p.tenant);
        const renderings = await this.#renderAll(note);
        if (!renderings) continue; // the predecessor went away meanwhile: next time
        if (await this.#d.ledger.attachRenderings(p.revisionId, renderings)) placed++;
      } catch (e) {
        const err = toScribeError(e);
        if (err.disposition !== 'retry') await this.#d.ledger.refusePendingRender(p.revisionId, err.code);
      }
    }
    if (placed > 0) this.#d.onRecorded?.();
    return placed;
  }

  /** Verifies with the tenant's keys, read again once if the signature names a key id they lack (rotation). */
  async #verify(read: ReturnType<typeof readEnvelope>): Promise<VerifiedNote> {
    const tenant = read.envelope.tenant;
    try {
      return await verifyEnvelope(read, { keys: await this.#keys.get(tenant), ...this.#artifactDeps() });
    } catch (e) {
      if (!(e instanceof ScribeError) || e.code !== 'KEY_UNKNOWN' || e.where === '$.tenant') throw e;
      const fresh = this.#keys.refresh(tenant);
      if (fresh === 'cooldown') {
        // A key rotated in since the keys were read moments ago must not be refused for good: retried, the note
        // meets keys read again (SQS redelivers it; an HTTP sender is told 503).
        throw new ScribeError(
          'KEYS_REFRESH_PENDING',
          `the signature names a key id this tenant's JWKS did not hold when it was read, less than ${KEYS_REFRESH_COOLDOWN_MS / 1000} s ago`,
          { where: e.where ?? '$.signature.jws' },
        );
      }
      return verifyEnvelope(read, { keys: await fresh, ...this.#artifactDeps() });
    }
  }

  #slot(): Promise<void> | undefined {
    if (this.#slots.free > 0) {
      this.#slots.free--;
      return undefined;
    }
    return new Promise((resolve) => this.#slots.waiting.push(resolve));
  }

  /** Hands the slot to the longest-waiting envelope, or frees it. */
  #release(): void {
    const next = this.#slots.waiting.shift();
    if (next) next();
    else this.#slots.free++;
  }

  /**
   * A refused envelope (verification or rendering failed for good) gets an audit record of its own — tenant (when it is a
   * configured one), code, source and the sha256 of the bytes, no content — before the refusal is answered.
   * Transient failures (retry) are not refusals. If the record cannot be written, that error is thrown instead,
   * so no refusal goes unrecorded (the sender or the queue retries).
   */
  async #auditRefusal(e: unknown, bytes: Uint8Array, source: string, tenant: string | undefined) {
    if (!(e instanceof ScribeError) || e.disposition === 'retry') return;
    const known = tenant !== undefined && this.#d.config.tenants.some((t) => t.id === tenant);
    await auditVerificationFailure(this.#d.ledger.db, {
      tenant: known ? tenant : null,
      code: e.code,
      source,
      contentSha256: createHash('sha256').update(bytes).digest('hex'),
    });
  }

  #artifactDeps() {
    return {
      turn: this.#cpu.turn,
      ...(this.#d.objectStore ? { objectStore: this.#d.objectStore } : {}),
      ...(this.#d.jobLocator ? { jobLocator: this.#d.jobLocator } : {}),
    };
  }

  /** The renderings for every destination of the tenant, or undefined when a retraction's revision is not here yet. */
  async #renderAll(note: VerifiedNote): Promise<RenderingInput[] | undefined> {
    const tenant = this.#d.config.tenants.find((t) => t.id === note.envelope.tenant)!;
    const out: RenderingInput[] = [];
    let prior: VerifiedNote | undefined;
    for (const id of tenant.destinations) {
      const dest = this.#d.config.destinations.find((x) => x.id === id)!;
      const mapping = await this.#mappingFor(dest);
      if (lifecycleMode(note) === 'retraction' && mapping.retractionSubject === 'prior') {
        prior ??= await this.#prior(note);
        if (!prior) return undefined;
      }
      await this.#cpu.turn();
      const r = render(mapping, { note, ...(prior ? { prior } : {}), options: renderOptions(dest) });
      this.#d.conformance.check(r);
      out.push({
        destination: dest.id,
        mapping: r.mapping,
        contentType: r.contentType,
        payload: r.body,
        payloadSha256: r.sha256,
        writeRequest: r.request ?? null,
        // Decided now, while the value is in hand; the sender then sends the recorded bytes without parsing them.
        writePlan: dest.type === 'fhir' ? plannedWrite(r, dest.write) : null,
        identifiers: identifiersOf(r),
      });
    }
    return out;
  }

  async #mappingFor(dest: DestinationConfig): Promise<Mapping> {
    if (this.#d.activeMappings) return this.#d.activeMappings.get(dest.id);
    const mapping = this.#d.mappings.get(dest.mapping.file);
    await this.#d.conformance.prove(mapping);
    return mapping;
  }

  /**
   * The revision a retraction retracts, from the ledger, verified again (its content is re-sent unchanged);
   * undefined when it has not arrived (the retraction is then recorded as waiting, rendered once it is here).
   */
  async #prior(note: VerifiedNote): Promise<VerifiedNote | undefined> {
    const e = note.envelope;
    const rows = await this.#d.ledger.db.query<{ envelope: unknown }>(
      'select envelope from note_revisions where tenant = $1 and note_id = $2 and revision = $3',
      [e.tenant, e.noteId, e.replaces],
    );
    const raw = rows[0]?.envelope;
    return raw ? this.#verifyStored(raw, e.tenant) : undefined;
  }

  /** An envelope from the ledger, verified again (its content and artifacts are checked, as when it arrived). */
  async #verifyStored(raw: unknown, tenant: string): Promise<VerifiedNote> {
    try {
      return await verifyEnvelope(JSON.stringify(raw), {
        keys: await this.#keys.get(tenant),
        ...this.#artifactDeps(),
      });
    } catch (err) {
      // Verified when it was recorded (the ledger holds only verified revisions); its key may since have been
      // rotated out of the tenant's JWKS. The content and artifacts are still checked, the signature not again.
      if (!(err instanceof ScribeError) || err.code !== 'KEY_UNKNOWN') throw err;
      return verifyEnvelope(JSON.stringify(raw), { keys: 'skip-signature', ...this.#artifactDeps() });
    }
  }
}

/**
 * The FHIR request for a rendering, or null when it cannot be sent to a REST destination: that delivery then
 * fails at send time with FHIR_UNSENDABLE (recorded as its attempt), as it did before plans were recorded.
 */
function plannedWrite(r: Rendering, write: 'conditional-create' | 'put') {
  try {
    return planWrite(r, write);
  } catch (e) {
    if (e instanceof ScribeError) return null;
    throw e;
  }
}
