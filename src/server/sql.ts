// The fleet database behind one small interface, for node:sqlite (one process, WAL) and PostgreSQL
// through pg (any number of processes). Queries are written once, with `?` placeholders, in the SQL both
// engines share (INSERT ... ON CONFLICT, RETURNING, multi-row VALUES); the PostgreSQL side numbers the
// placeholders. Transactions serialize on SQLite (one connection) and take a pooled client on PostgreSQL.

import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
import pg from "pg";
import { BerthError, UsageError } from "../common/errors.ts";

export type Dialect = "sqlite" | "postgres";
export type Param = string | number | boolean | null | undefined;

export interface Sql {
  readonly dialect: Dialect;
  all<T>(sql: string, params?: Param[]): Promise<T[]>;
  get<T>(sql: string, params?: Param[]): Promise<T | undefined>;
  /** Runs a statement; resolves with the number of rows it changed. */
  run(sql: string, params?: Param[]): Promise<number>;
}

export interface Database extends Sql {
  readonly url: string;
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  tx<T>(fn: (tx: Sql) => Promise<T>): Promise<T>;
  /** Several statements without parameters (migrations). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

/** Parses --db: sqlite:PATH (relative or absolute) or postgres://... */
export function parseDbUrl(url: string): { dialect: Dialect; target: string } {
  if (/^postgres(ql)?:\/\//.test(url)) return { dialect: "postgres", target: url };
  const m = /^sqlite:(?:\/\/)?(.+)$/.exec(url);
  if (m) return { dialect: "sqlite", target: resolve(m[1]!) };
  throw new UsageError(`--db wants sqlite:PATH or postgres://USER:PASSWORD@HOST/DB, not "${url}"`);
}

export async function openDatabase(url: string): Promise<Database> {
  const { dialect, target } = parseDbUrl(url);
  if (dialect === "sqlite") return new SqliteDatabase(url, target);
  const db = new PostgresDatabase(url, target);
  await db.ping();
  return db;
}

const toSqlite = (p: Param): SQLInputValue =>
  p === undefined ? null : typeof p === "boolean" ? Number(p) : p;

class SqliteSql implements Sql {
  readonly dialect = "sqlite" as const;
  private readonly statements = new Map<string, StatementSync>();
  protected readonly db: DatabaseSync;
  constructor(db: DatabaseSync) {
    this.db = db;
  }

  protected stmt(sql: string): StatementSync {
    let s = this.statements.get(sql);
    if (!s) {
      s = this.db.prepare(sql);
      this.statements.set(sql, s);
    }
    return s;
  }
  async all<T>(sql: string, params: Param[] = []): Promise<T[]> {
    return this.stmt(sql).all(...params.map(toSqlite)) as T[];
  }
  async get<T>(sql: string, params: Param[] = []): Promise<T | undefined> {
    return this.stmt(sql).get(...params.map(toSqlite)) as T | undefined;
  }
  async run(sql: string, params: Param[] = []): Promise<number> {
    return Number(this.stmt(sql).run(...params.map(toSqlite)).changes);
  }
}

/**
 * One connection. Statements outside a transaction wait for the open one, so interleaved async
 * requests never write into another request's transaction.
 */
class SqliteDatabase implements Database {
  readonly dialect = "sqlite" as const;
  private readonly db: DatabaseSync;
  private readonly inner: SqliteSql;
  private lock: Promise<void> = Promise.resolve();
  private pending: {
    fn: (tx: Sql) => Promise<unknown>;
    resolve: (v: unknown) => void;
    reject: (e: unknown) => void;
  }[] = [];
  private flushing = false;
  readonly url: string;

  constructor(url: string, path: string) {
    this.url = url;
    mkdirSync(dirname(path), { recursive: true });
    try {
      this.db = new DatabaseSync(path);
      // WAL: readers never wait for the writer. synchronous=FULL: a commit is on disk before it returns,
      // so an acknowledged report survives a power cut, not only kill -9.
      this.db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000;");
      this.db.exec("PRAGMA foreign_keys = ON; PRAGMA cache_size = -65536;");
    } catch (e) {
      throw new BerthError(`cannot open fleet database ${path}: ${(e as Error).message}`);
    }
    this.inner = new SqliteSql(this.db);
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    const before = this.lock;
    let release!: () => void;
    this.lock = new Promise<void>((r) => {
      release = r;
    });
    await before;
    try {
      return await fn();
    } finally {
      release();
    }
  }

  all<T>(sql: string, params?: Param[]): Promise<T[]> {
    return this.locked(() => this.inner.all<T>(sql, params));
  }
  get<T>(sql: string, params?: Param[]): Promise<T | undefined> {
    return this.locked(() => this.inner.get<T>(sql, params));
  }
  run(sql: string, params?: Param[]): Promise<number> {
    return this.locked(() => this.inner.run(sql, params));
  }
  /**
   * Group commit: transactions asked for while the database is busy run together in one SQLite
   * transaction, each inside its own savepoint (a failing one is rolled back alone), and all of them
   * resolve only after the one COMMIT. With synchronous=FULL that is one fsync per batch, not one per
   * request, and an answer is never given before its data is on disk.
   */
  tx<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.pending.push({
        fn: fn as (tx: Sql) => Promise<unknown>,
        resolve: resolve as (v: unknown) => void,
        reject,
      });
      if (!this.flushing) {
        this.flushing = true;
        setImmediate(() => void this.flush());
      }
    });
  }

  private async flush(): Promise<void> {
    await this.locked(async () => {
      while (this.pending.length) {
        const batch = this.pending.splice(0, 512);
        const results: ({ ok: true; value: unknown } | { ok: false; error: unknown })[] = [];
        try {
          this.db.exec("BEGIN IMMEDIATE");
          for (const t of batch) {
            this.db.exec("SAVEPOINT berth_tx");
            try {
              results.push({ ok: true, value: await t.fn(this.inner) });
              this.db.exec("RELEASE berth_tx");
            } catch (error) {
              this.db.exec("ROLLBACK TO berth_tx");
              this.db.exec("RELEASE berth_tx");
              results.push({ ok: false, error });
            }
          }
          this.db.exec("COMMIT");
        } catch (error) {
          if (this.db.isTransaction) this.db.exec("ROLLBACK");
          for (const t of batch) t.reject(error);
          continue;
        }
        batch.forEach((t, i) => {
          const r = results[i]!;
          if (r.ok) t.resolve(r.value);
          else t.reject(r.error);
        });
      }
    });
    this.flushing = false;
    // Work that arrived while the lock was being released.
    if (this.pending.length) {
      this.flushing = true;
      setImmediate(() => void this.flush());
    }
  }

  exec(sql: string): Promise<void> {
    return this.locked(async () => this.db.exec(sql));
  }
  async close(): Promise<void> {
    while (this.flushing || this.pending.length) await new Promise((r) => setImmediate(r));
    await this.lock;
    if (this.db.isOpen) this.db.close();
  }
}

/** `?` -> `$1`, `$2`, ... (the queries never contain a literal question mark). */
export function numberPlaceholders(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

const toPg = (p: Param): unknown => (p === undefined ? null : p);

class PgSql implements Sql {
  readonly dialect = "postgres" as const;
  private readonly texts = new Map<string, string>();
  protected readonly client: pg.Pool | pg.PoolClient;
  constructor(client: pg.Pool | pg.PoolClient) {
    this.client = client;
  }
  protected text(sql: string): string {
    let t = this.texts.get(sql);
    if (!t) {
      t = numberPlaceholders(sql);
      this.texts.set(sql, t);
    }
    return t;
  }
  async all<T>(sql: string, params: Param[] = []): Promise<T[]> {
    return (await this.client.query(this.text(sql), params.map(toPg))).rows as T[];
  }
  async get<T>(sql: string, params: Param[] = []): Promise<T | undefined> {
    return (await this.all<T>(sql, params))[0];
  }
  async run(sql: string, params: Param[] = []): Promise<number> {
    return (await this.client.query(this.text(sql), params.map(toPg))).rowCount ?? 0;
  }
}

// 64-bit integers and numerics come back as JavaScript numbers (every count and timestamp here fits).
const pgTypes = {
  getTypeParser: (oid: number, format?: string) =>
    oid === 20 || oid === 1700
      ? (v: string) => Number(v)
      : pg.types.getTypeParser(oid, (format ?? "text") as "text"),
};

class PostgresDatabase extends PgSql implements Database {
  private readonly pool: pg.Pool;
  readonly url: string;
  constructor(url: string, connectionString: string) {
    const pool = new pg.Pool({ connectionString, max: 10, types: pgTypes as never });
    super(pool);
    this.pool = pool;
    this.url = url;
    // An idle client that loses its connection must not take the process down.
    pool.on("error", () => {});
  }
  async ping(): Promise<void> {
    try {
      await this.pool.query("SELECT 1");
    } catch (e) {
      await this.pool.end().catch(() => {});
      throw new BerthError(`cannot connect to ${redact(this.url)}: ${(e as Error).message}`);
    }
  }
  async tx<T>(fn: (tx: Sql) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query("BEGIN");
      const r = await fn(new PgSql(client));
      await client.query("COMMIT");
      return r;
    } catch (e) {
      await client.query("ROLLBACK").catch(() => {});
      throw e;
    } finally {
      client.release();
    }
  }
  async exec(sql: string): Promise<void> {
    await this.pool.query(sql);
  }
  async close(): Promise<void> {
    await this.pool.end();
  }
}

/** A database URL without its password, for messages. */
export function redact(url: string): string {
  return url.replace(/(\/\/[^:/@]+):[^@]*@/, "$1:***@");
}

/** Rows in chunks, for multi-row INSERTs under both engines' parameter limits. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** "(?, ?, ?), (?, ?, ?)" for `rows` rows of `width` columns. */
export function valuesList(rows: number, width: number): string {
  const one = `(${Array.from({ length: width }, () => "?").join(", ")})`;
  return Array.from({ length: rows }, () => one).join(", ");
}
