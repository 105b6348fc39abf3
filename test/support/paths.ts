/** Where things are: the repository's root folder. */
import { resolve } from 'node:path';

export const repoRoot = resolve(import.meta.dirname, '../..');
