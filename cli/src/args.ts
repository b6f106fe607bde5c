import { parseArgs, type ParseArgsConfig } from 'node:util';
import { readFileSync } from 'node:fs';
import { flagName, type ConfigDefinition, type ConfigOf, type Field } from '@airlock/common/config';
import { AirlockError, ConfigError, ErrorCode, errorMessage } from '@airlock/common/errors';

type Schema = Record<string, Field<unknown>>;

/** A usage error: printed with the command's help hint, exit code 2. */
export class UsageError extends AirlockError {
  constructor(message: string) {
    super(ErrorCode.BadRequest, message);
    this.name = 'UsageError';
  }
}

export function parseFlags(argv: readonly string[], options: ParseArgsConfig['options']): ReturnType<typeof parseArgs> {
  try {
    return parseArgs({ args: [...argv], options, strict: true, allowPositionals: true });
  } catch (err) {
    throw new UsageError(errorMessage(err).replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
}

/**
 * Loads a process config from `--config FILE`, `AIRLOCK_*` env and the flags derived from the
 * config definition. Returns undefined after printing help when `--help` was given.
 */
export function loadCommandConfig<S extends Schema>(
  argv: readonly string[],
  definition: ConfigDefinition<S>,
  help: string,
  env: NodeJS.ProcessEnv = process.env,
): ConfigOf<S> | undefined {
  const options: NonNullable<ParseArgsConfig['options']> = {
    help: { type: 'boolean', short: 'h' },
    config: { type: 'string' },
  };
  const byFlag = new Map<string, string>();
  for (const key of Object.keys(definition.schema)) {
    options[flagName(key)] = { type: 'string' };
    byFlag.set(flagName(key), key);
  }
  const { values, positionals } = parseFlags(argv, options);
  if (values.help === true) {
    console.log(`${help}\n\nSettings (flag, env var, or key in the --config YAML file; flags win over env, env over file):\n\n${definition.docs()}`);
    return undefined;
  }
  if (positionals.length > 0) throw new UsageError(`unexpected argument "${positionals[0] ?? ''}"`);
  const flags: Record<string, string | undefined> = {};
  for (const [flag, value] of Object.entries(values)) {
    const key = byFlag.get(flag);
    if (key !== undefined && typeof value === 'string') flags[key] = value;
  }
  let file: { path: string; text: string } | undefined;
  const configPath = values.config ?? env[`${definition.envPrefix}_CONFIG`];
  if (typeof configPath === 'string') {
    try {
      file = { path: configPath, text: readFileSync(configPath, 'utf8') };
    } catch (err) {
      throw new ConfigError([`cannot read config file ${configPath}: ${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}`]);
    }
  }
  return definition.load({ flags, env, ...(file === undefined ? {} : { file }) });
}
