// The components an update source can publish. Unknown ids are allowed: a source may add its own, full-only
// unless its publisher input declares otherwise (DIR/<component-id>/component.json); these are the ones
// Bulwark knows by name.

export interface ComponentInfo {
  id: string;
  name: string;
  /** Uses component duplication: incremental patterns between full versions. */
  duplication: boolean;
}

export const KNOWN_COMPONENTS: readonly ComponentInfo[] = [
  { id: 'virus-pattern', name: 'Virus Pattern', duplication: true },
  { id: 'smart-scan-agent-pattern', name: 'Smart Scan Agent Pattern', duplication: true },
  { id: 'damage-cleanup-template', name: 'Damage Cleanup Template', duplication: true },
  { id: 'intellitrap-exception-pattern', name: 'IntelliTrap Exception Pattern', duplication: true },
  { id: 'spyware-pattern', name: 'Spyware Pattern', duplication: true },
  { id: 'scan-engine', name: 'Scan Engine', duplication: false },
  { id: 'outbreak-defense-policy', name: 'Outbreak Defense Policy', duplication: false },
];

/** Component ids become directory names: keep them to a safe alphabet. */
export const COMPONENT_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,63}$/;

/** Versions are positive integers that fit comfortably in JSON and file names. */
export const MAX_VERSION = 2 ** 31 - 1;

export function isValidVersion(value: unknown): value is number {
  return Number.isSafeInteger(value) && (value as number) >= 1 && (value as number) <= MAX_VERSION;
}

/** What a publisher's input may declare about a component; the rest comes from KNOWN_COMPONENTS or the id (full-only). */
export type ComponentDeclaration = Partial<Pick<ComponentInfo, 'name' | 'duplication'>>;

export function componentInfo(id: string, declared: ComponentDeclaration = {}): ComponentInfo {
  const known = KNOWN_COMPONENTS.find((c) => c.id === id);
  const name = known?.name ?? id.split('-').map((w) => w.charAt(0).toUpperCase() + w.slice(1)).join(' ');
  return { id, name: declared.name ?? name, duplication: declared.duplication ?? known?.duplication ?? false };
}
