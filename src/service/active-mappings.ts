/**
 * Mapping hot reload: the mapping each destination renders with, changed while the service runs.
 *
 * At start every destination's mapping is loaded and proven (src/validate/conformance.ts), and a failure stops
 * the start, as before. Afterwards `refresh()` — every few seconds, and at once on SIGHUP (src/cli/serve.ts) —
 * looks at each destination's mapping file again (MappingRegistry recompiles a mapping whose file or one of
 * whose imports changed). A changed mapping that compiles and passes its proof becomes the destination's mapping for every
 * note taken in from then on; the renderings it makes carry its id, version and digest as always. A change that
 * does not compile or is not proven is reported once (log event `mapping.reload-failed` with the stable code,
 * and the `scribe_bridge_mapping_reloads_total{outcome="failed"}` counter) and the destination keeps the
 * mapping it had: a bad edit to a file never stops intake or dead-letters notes. Fix the file and it is picked
 * up at the next refresh.
 *
 * Intake reads the active mapping without touching the file system, and a proof (up to a few seconds for the
 * Bundle mappings) runs here, off the path of any note.
 */
import type { DestinationConfig } from '../config/index.ts';
import { ScribeError } from '../errors.ts';
import type { Mapping } from '../map/mapping-file.ts';
import { type MappingRegistry, mtimeOf } from '../map/registry.ts';
import type { Conformance } from '../validate/conformance.ts';

/** What a reload did, for the log and the metrics. Ids, versions, digests and codes only. */
export type MappingEvent =
  | {
      readonly event: 'mapping.reloaded';
      readonly destination: string;
      readonly mapping: string;
      readonly version: string;
      readonly digest: string;
      readonly previousVersion: string;
      readonly previousDigest: string;
    }
  | {
      readonly event: 'mapping.reload-failed';
      readonly destination: string;
      readonly file: string;
      readonly code: string;
      /** The mapping the destination keeps. */
      readonly keepingMapping: string;
      readonly keepingVersion: string;
      readonly keepingDigest: string;
    };

export interface ActiveMappingsDeps {
  readonly destinations: readonly DestinationConfig[];
  readonly registry: MappingRegistry;
  readonly conformance: Conformance;
  readonly onEvent?: (e: MappingEvent) => void;
}

export class ActiveMappings {
  readonly #d: ActiveMappingsDeps;
  readonly #active = new Map<string, Mapping>();
  /** Per destination, the change last reported as failed (source mtimes, or digest), so it is reported once. */
  readonly #reported = new Map<string, string>();
  #refreshing: Promise<void> | undefined;
  #timer: NodeJS.Timeout | undefined;

  private constructor(deps: ActiveMappingsDeps) {
    this.#d = deps;
  }

  /** Loads and proves every destination's mapping; throws (stopping the start) when one fails. */
  static async load(
    deps: ActiveMappingsDeps,
    onProven?: (destination: string, m: Mapping) => void,
  ): Promise<ActiveMappings> {
    const a = new ActiveMappings(deps);
    for (const d of deps.destinations) {
      const m = deps.registry.get(d.mapping.file);
      await deps.conformance.prove(m);
      a.#active.set(d.id, m);
      onProven?.(d.id, m);
    }
    return a;
  }

  /** The mapping a destination renders with now. */
  get(destination: string): Mapping {
    const m = this.#active.get(destination);
    if (!m) throw new ScribeError('INTERNAL', `no mapping is active for destination ${destination}`);
    return m;
  }

  /**
   * Looks at every destination's mapping file again and activates what changed and passes its proof. One
   * refresh at a time: a call while one runs waits for it.
   */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined;
    });
    return this.#refreshing;
  }

  /** Refreshes every `intervalMs` (the timer does not keep the process alive). */
  start(intervalMs: number): void {
    this.stop();
    this.#timer = setInterval(() => void this.refresh(), intervalMs);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #refresh(): Promise<void> {
    for (const d of this.#d.destinations) {
      const current = this.get(d.id);
      let next: Mapping;
      try {
        next = this.#d.registry.get(d.mapping.file);
      } catch (e) {
        this.#failed(d, current, e, `load:${current.sources.map(mtimeOf).join(',')}`);
        continue;
      }
      if (next.digest === current.digest) {
        this.#reported.delete(d.id);
        continue;
      }
      // A version whose proof already failed is not proven again every poll (seconds of CPU for a Bundle mapping).
      if (this.#reported.get(d.id) === `prove:${next.digest}`) continue;
      try {
        await this.#d.conformance.prove(next);
      } catch (e) {
        this.#failed(d, current, e, `prove:${next.digest}`);
        continue;
      }
      this.#active.set(d.id, next);
      this.#reported.delete(d.id);
      this.#d.onEvent?.({
        event: 'mapping.reloaded',
        destination: d.id,
        mapping: next.id,
        version: next.version,
        digest: next.digest,
        previousVersion: current.version,
        previousDigest: current.digest,
      });
    }
  }

  #failed(d: DestinationConfig, keeping: Mapping, e: unknown, key: string): void {
    if (this.#reported.get(d.id) === key) return;
    this.#reported.set(d.id, key);
    this.#d.onEvent?.({
      event: 'mapping.reload-failed',
      destination: d.id,
      file: keeping.file,
      code: e instanceof ScribeError ? e.code : 'INTERNAL',
      keepingMapping: keeping.id,
      keepingVersion: keeping.version,
      keepingDigest: keeping.digest,
    });
  }
}
