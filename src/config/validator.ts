import type { ValidateFunction } from 'ajv';
// ConfigSchema (schema.ts) compiled by ajv at build time (scripts/validators.ts), so the agent never
// runs ajv's compiler.
import { validate } from './config-validator.generated.ts';

/** The validator of ConfigSchema, which also fills in its defaults; made by `npm run build:validators`. */
export const configValidator = validate as ValidateFunction;
