// Errors the console's transports report, in one shape whatever the transport: a message fit to
// show, and a code the UI can act on (401 becomes the "open the printed URL" banner).
import type { ApiErrorBody } from '../../src-main/console/contract.js';

export type ConsoleErrorCode = ApiErrorBody['code'] | 'network' | 'unavailable';

export class ConsoleApiError extends Error {
  constructor(
    message: string,
    readonly code: ConsoleErrorCode,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'ConsoleApiError';
  }
}

export const UNAUTHORIZED_MESSAGE = "This browser's access to the console is no longer accepted: its access token was replaced.";

/** A message for any failure, without transport noise (Electron prefixes IPC rejections). */
export function errorMessage(error: unknown): string {
  const raw = error instanceof Error ? error.message : String(error);
  return sentence(raw.replace(/^Error invoking remote method '[^']*': (?:\w*Error: )?/, ''));
}

/** The engine writes messages in lower case to be composable; the console shows them as sentences. */
export function sentence(text: string): string {
  return text ? text.charAt(0).toUpperCase() + text.slice(1) : text;
}
