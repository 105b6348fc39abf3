import type Database from 'better-sqlite3';

/** Prepared statements of one connection, each SQL text compiled once and reused. */
export function statementCache(db: Database.Database): <R = unknown>(sql: string) => Database.Statement<unknown[], R> {
  const statements = new Map<string, Database.Statement>();
  return <R = unknown>(sql: string): Database.Statement<unknown[], R> => {
    let statement = statements.get(sql);
    if (!statement) {
      statement = db.prepare(sql);
      statements.set(sql, statement);
    }
    return statement as Database.Statement<unknown[], R>;
  };
}
