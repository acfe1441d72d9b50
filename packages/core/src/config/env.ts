// biome-ignore-all lint/suspicious/noTemplateCurlyInString: `${env:…}` is the config syntax this file handles
/**
 * `${env:NAME}` references inside YAML string scalars.
 *
 * Substitution happens on the parsed value of one scalar, never on the file text, so a
 * variable's content is only ever that scalar's text: it cannot add keys, close quotes or
 * turn into a number. `$${env:NAME}` stands for the literal text `${env:NAME}`. An unset
 * (or empty) variable is an error; it never silently becomes an empty string.
 */

const REFERENCE = /(\$?)\$\{env:([^}]*)\}/g;
const VARIABLE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

export interface EnvSubstitution {
  value: string;
  /** Problems, already phrased for the user (which variable, why). */
  problems: string[];
  /** Variables the scalar referred to. */
  variables: string[];
}

/** `keepMissing`: an unset variable is no problem, its reference stays as written (resolved later, elsewhere). */
export function substituteEnv(
  text: string,
  env: NodeJS.ProcessEnv,
  options: { keepMissing?: boolean } = {},
): EnvSubstitution {
  const problems: string[] = [];
  const variables: string[] = [];
  const value = text.replace(REFERENCE, (whole, dollar: string, name: string) => {
    if (dollar === '$') return whole.slice(1);
    if (!VARIABLE_NAME.test(name)) {
      problems.push(
        `"\${env:${name}}" is not a valid environment variable reference (names are letters, digits and _)`,
      );
      return whole;
    }
    variables.push(name);
    const found = env[name];
    if (found === undefined) {
      if (options.keepMissing) return whole;
      problems.push(`environment variable ${name} is not set`);
      return whole;
    }
    if (found === '') {
      problems.push(`environment variable ${name} is set but empty`);
      return whole;
    }
    return found;
  });
  const unclosed = /(^|[^$])\$\{env:[^}]*$/.test(text);
  if (unclosed) problems.push('"${env:" is not closed with "}"');
  return { value, problems, variables };
}

/** True when the string contains at least one (unescaped) `${env:…}` reference. */
export function hasEnvReference(text: string): boolean {
  for (const match of text.matchAll(REFERENCE)) if (match[1] !== '$') return true;
  return false;
}

/** True when the string is nothing but references (no literal text that could be a secret). */
export function isOnlyEnvReferences(text: string): boolean {
  if (!hasEnvReference(text)) return false;
  return text.replace(REFERENCE, (whole, dollar: string) => (dollar === '$' ? whole : '')) === '';
}
