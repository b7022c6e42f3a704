// Values an agent sends (its name, host name, errors…) are the agent's words: anyone holding an
// enrollment token, or a compromised endpoint, chooses them. Before one reaches a log line or the
// console it is made visible as text: control characters (a newline would forge a log line), the
// Unicode controls that reorder or hide text (bidirectional overrides, zero-width characters) and
// quotes are escaped, and its length is bounded.

/** C0 and C1 controls, and the Unicode format characters that reorder or hide text. */
const INVISIBLE = /[\u0000-\u001f\u007f-\u009f\u00ad\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]/gu;

function escapeChar(char: string): string {
  switch (char) {
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    default:
      return `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`;
  }
}

function bounded(value: unknown, max: number): string {
  const text = String(value ?? '');
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** An agent's value as visible text (the console): invisible and control characters escaped, at most `max` characters (then "…"). */
export function visible(value: unknown, max = 200): string {
  return bounded(value, max).replace(INVISIBLE, escapeChar);
}

/**
 * An agent's value for a log line, in double quotes with its own quotes and backslashes escaped as
 * well (as in JSON), so that nothing in it can look like the line around it or like another line.
 */
export function quoted(value: unknown, max = 200): string {
  return `"${bounded(value, max).replace(/[\\"]/g, (c) => `\\${c}`).replace(INVISIBLE, escapeChar)}"`;
}
