// Opens the server's database, loading only the driver it needs (better-sqlite3 or pg). Apart from db.ts so that
// the drivers' files, which import db.ts's types, form no import cycle with it.
import { isPostgresUrl } from './db.ts';
import type { Database } from './db.ts';

/** Opens the database `location` names: a postgres:// URL or a SQLite file path. Migrates it to the current schema. */
export async function openDatabase(location: string): Promise<Database> {
  if (isPostgresUrl(location)) {
    const { openPostgres } = await import('./pg-db.ts');
    return openPostgres(location);
  }
  const { openSqlite } = await import('./sqlite-db.ts');
  return openSqlite(location);
}
