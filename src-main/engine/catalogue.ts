// The catalogue: a signed TUF target (catalogue.json) that lists what the source publishes.
// Its own hash is pinned by the targets metadata, so everything in it is as trustworthy as the
// signatures; the schema check below only guards against a source publishing nonsense.
import { Ajv, type JSONSchemaType } from 'ajv';
import { COMPONENT_ID_PATTERN, MAX_VERSION } from './components.js';
import { SourceError } from './errors.js';

export const CATALOGUE_TARGET = 'catalogue.json';

export interface IncrementalEntry {
  /** Base version the pattern applies to; it always leads to the component's latest version. */
  from: number;
  /** TUF target path of the pattern, e.g. "virus-pattern/v_173.175". */
  target: string;
  /** How it is coded (codec.ts): 'zstd' (patch-from) or 'records'; absent in older catalogues, meaning 'zstd'. */
  format?: string;
}

export interface CatalogueComponent {
  id: string;
  name: string;
  duplication: boolean;
  latest: number;
  full: {
    /** TUF target path of the compressed full file, e.g. "virus-pattern/175.zst". */
    target: string;
    /** Length and SHA-256 of the uncompressed file: what the client stores and verifies. */
    length: number;
    sha256: string;
    /** How the full file is coded (codec.ts): 'zstd' or 'xz'; absent in older catalogues, meaning 'zstd'. */
    codec?: string;
    /**
     * The same file coded smaller, in a codec that a Bulwark older than xz full files cannot decode.
     * `target` then stays a zstd frame, which every version decodes: an older Bulwark reads only
     * `target` (it ignores fields it does not know), so it keeps updating from a source that uses xz.
     */
    compact?: { target: string; codec: string };
  };
  incrementals: IncrementalEntry[];
}

export interface Catalogue {
  schema: 1;
  published: string;
  components: CatalogueComponent[];
}

const CODEC_NAME = '^[a-z0-9-]{1,32}$';
const targetPath = { type: 'string', pattern: '^[a-z0-9][a-z0-9-]{0,63}/[A-Za-z0-9_.]{1,80}$' } as const;

const schema: JSONSchemaType<Catalogue> = {
  type: 'object',
  required: ['schema', 'published', 'components'],
  properties: {
    schema: { type: 'integer', const: 1 },
    published: { type: 'string', format: 'date-time' } as never,
    components: {
      type: 'array',
      maxItems: 256,
      items: {
        type: 'object',
        required: ['id', 'name', 'duplication', 'latest', 'full', 'incrementals'],
        properties: {
          id: { type: 'string', pattern: COMPONENT_ID_PATTERN.source },
          name: { type: 'string', minLength: 1, maxLength: 100 },
          duplication: { type: 'boolean' },
          latest: { type: 'integer', minimum: 1, maximum: MAX_VERSION },
          full: {
            type: 'object',
            required: ['target', 'length', 'sha256'],
            properties: {
              target: targetPath,
              length: { type: 'integer', minimum: 0 },
              sha256: { type: 'string', pattern: '^[0-9a-f]{64}$' },
              // Any name: one this version cannot decode is reported as such when it is needed.
              codec: { type: 'string', pattern: CODEC_NAME, nullable: true },
              compact: {
                type: 'object',
                required: ['target', 'codec'],
                properties: { target: targetPath, codec: { type: 'string', pattern: CODEC_NAME } },
                nullable: true,
              },
            },
          },
          incrementals: {
            type: 'array',
            maxItems: 64,
            items: {
              type: 'object',
              required: ['from', 'target'],
              properties: {
                from: { type: 'integer', minimum: 1, maximum: MAX_VERSION },
                target: targetPath,
                format: { type: 'string', pattern: CODEC_NAME, nullable: true },
              },
            },
          },
        },
      },
    },
  },
};

const compileCatalogueSchema = () => new Ajv({ allErrors: false, formats: { 'date-time': true } }).compile(schema);
/** Compiled on first use, not at import. */
let validate: ReturnType<typeof compileCatalogueSchema> | undefined;

/** Parse and check a catalogue's bytes; throws SourceError naming the first problem. */
export function parseCatalogue(bytes: Uint8Array): Catalogue {
  let data: unknown;
  try {
    data = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new SourceError('the catalogue is not valid JSON', { cause });
  }
  validate ??= compileCatalogueSchema();
  if (!validate(data)) {
    const problem = validate.errors?.[0];
    throw new SourceError(`the catalogue is malformed: ${problem?.instancePath || '/'} ${problem?.message ?? ''}`.trim());
  }
  const ids = new Set<string>();
  for (const component of data.components) {
    if (ids.has(component.id)) throw new SourceError(`the catalogue lists ${component.id} twice`);
    ids.add(component.id);
    for (const inc of component.incrementals) {
      if (inc.from >= component.latest) {
        throw new SourceError(`the catalogue's incremental ${inc.target} does not lead forward to ${component.latest}`);
      }
    }
  }
  return data;
}

/** TUF target path of an incremental pattern from `from` to `to` (the naming the vendor uses: v_173.175). */
export function incrementalTarget(id: string, from: number, to: number): string {
  return `${id}/v_${from}.${to}`;
}

/** TUF target path of a full file: <id>/<version>.zst, or .xz for an xz-coded one. */
export function fullTarget(id: string, version: number, codec = 'zstd'): string {
  return `${id}/${version}.${codec === 'zstd' ? 'zst' : codec}`;
}
