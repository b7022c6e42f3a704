// The renderer's view of the engine. The desktop shell will implement it over the preload bridge
// (and the browser console over HTTP); until then the stub below says honestly that there is nothing.

/** One installed component as the console shows it. */
export interface ComponentRow {
  /** Component identifier, e.g. the signature set's name. */
  id: string;
  /** Installed version (the engine numbers versions). */
  version: number;
  /** When the installed version was put in place (ISO 8601). */
  installedAt: string;
}

export interface ConsoleApi {
  listComponents(): Promise<ComponentRow[]>;
}

/** Placeholder until the preload bridge exists: no components, and no pretending otherwise. */
export const placeholderConsoleApi: ConsoleApi = {
  listComponents: () => Promise.resolve([]),
};
