/**
 * Every deterministic identifier scribe-bridge emits, derived from the business key
 * `(tenant, noteId, revision)` (plus the destination where the spec says so) — never random, never from
 * the clock — so a replay updates rather than duplicates, and the trace can go from any delivered id back to
 * the note.
 *
 * | identifier | form |
 * |---|---|
 * | note identifier (DocumentReference.identifier, Composition.identifier) | system `urn:scribe-bridge:<tenant>:note`, value `<noteId>-r<revision>` |
 * | document Bundle identifier | system `urn:scribe-bridge:<tenant>:document`, value `<noteId>-r<revision>` |
 * | resource ids (PUT) | `sb-` + 40 lower-case base32 chars of sha256(tenant, noteId, revision, kind, part) |
 * | fullUrl UUIDs in Bundles | `urn:uuid:` + RFC 9562 version-8 UUID from the last 16 bytes of the same hash |
 * | transcript segment identifier system | `urn:scribe-bridge:<tenant>:healthscribe:<job or session>:segment` (draft sentences: `…:draft`, value `<SECTION>/<index>`) |
 * | MSH-10 (≤ 20) | 20 base32 chars of sha256(tenant, noteId, revision, destination) |
 * | TXA-12.1 (≤ 30) | `<noteId>-r<revision>` when ≤ 30 chars, else `SB` + 28 base32 chars of sha256(tenant, noteId, revision) |
 */
import { hash } from 'node:crypto';
import { base32 } from '@scure/base';

export interface NoteKey {
  readonly tenant: string;
  readonly noteId: string;
  readonly revision: number;
}

export interface Identifier {
  readonly system: string;
  readonly value: string;
}

/** sha256 over length-prefixed parts, so ("ab","c") and ("a","bc") differ. One-shot `hash` is the fastest form. */
function digest(parts: readonly (string | number)[]): Buffer {
  let joined = '';
  for (const p of parts) {
    const s = String(p);
    joined += `${Buffer.byteLength(s)}:${s}`;
  }
  return hash('sha256', joined, 'buffer');
}

function b32(parts: readonly (string | number)[], length: number): string {
  return base32.encode(digest(parts)).slice(0, length);
}

export function noteIdentifier(key: NoteKey): Identifier {
  return { system: `urn:scribe-bridge:${key.tenant}:note`, value: `${key.noteId}-r${key.revision}` };
}

export function documentIdentifier(key: NoteKey): Identifier {
  return { system: `urn:scribe-bridge:${key.tenant}:document`, value: `${key.noteId}-r${key.revision}` };
}

/**
 * The resource id and the fullUrl UUID of one resource, from one hash: the id is `sb-` + 40 base32 characters
 * (25 bytes) of sha256(tenant, noteId, revision, kind, part); the UUID is an RFC 9562 version-8 (custom) UUID
 * from its last 16 bytes.
 */
export function resourceIds(key: NoteKey, kind: string, part = ''): { id: string; uuid: string } {
  const d = digest([key.tenant, key.noteId, key.revision, kind, part]);
  const b = Buffer.from(d.subarray(16, 32));
  b[6] = (b[6]! & 0x0f) | 0x80; // version 8
  b[8] = (b[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const h = b.toString('hex');
  return {
    id: `sb-${base32.encode(d).slice(0, 40).toLowerCase()}`,
    uuid: `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`,
  };
}

/** A FHIR resource id ([A-Za-z0-9\-.]{1,64}) for client-assigned ids. */
export function resourceId(key: NoteKey, kind: string, part = ''): string {
  return resourceIds(key, kind, part).id;
}

/** A deterministic UUID for Bundle fullUrls (see resourceIds). */
export function uuidFor(key: NoteKey, kind: string, part = ''): string {
  return resourceIds(key, kind, part).uuid;
}

export function segmentSystem(tenant: string, jobOrSession: string): string {
  return `urn:scribe-bridge:${tenant}:healthscribe:${jobOrSession}:segment`;
}

/** MSH-10 message control id: ≤ 20 characters, per note revision and destination. */
export function controlId(key: NoteKey, destination: string): string {
  return b32(['msh10', key.tenant, key.noteId, key.revision, destination], 20);
}

/** TXA-12.1 unique document number: ≤ 30 characters. */
export function documentNumber(key: NoteKey): string {
  const natural = `${key.noteId}-r${key.revision}`;
  return natural.length <= 30 ? natural : `SB${b32(['txa12', key.tenant, key.noteId, key.revision], 28)}`;
}
