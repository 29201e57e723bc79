// Package sqlanalysis is the control plane's SQL analyser: it runs the real GoogleSQL
// front end (github.com/goccy/go-googlesql v0.3.0, the version the BigQuery emulator
// uses) against a catalog of BigQuery table schemas and reports what a query does, in the
// vocabulary of the policies package (policies.Analysis).
//
// It owns:
//   - the one GoogleSQL engine of the process (googlesql.Init once, options hoisted, every
//     call serialised behind one mutex: the engine is not re-entrant). The mutex is never
//     held across tables.get or tables.list: with a CachedTableSource a round that meets
//     uncached metadata names it (placeholders let it name every table it can), is
//     discarded, the metadata is fetched concurrently without the lock, and the analysis
//     runs again (bounded rounds). GoogleSQL only borrows the engine objects the catalog
//     hands it (tables, models, ML functions, script catalogs): each analysis holds them
//     until it ends (engine.inUse), because a go-googlesql finalizer can free an object
//     the caches dropped while an engine call is suspended in a catalog callback
//     (lifetime_test.go; stress_test.go and `make stress` run the corpus under GC
//     pressure);
//   - the catalog: a Go callback catalog (googlesql.NewCatalogFromImpl) placed last in a
//     multi-catalog after the builtins. It splits backticked paths, fills in the request's
//     default project and dataset, and fetches schemas lazily from a TableSource;
//     NewBigQueryTableSource reads them with tables.get (and dataset listings with
//     tables.list, for wildcards), cached with a TTL (not found: a shorter one);
//   - Analyze: statement kind (policies.StatementKinds names), every table read, fully
//     qualified and sorted (views expanded to the tables their bodies read, bounded depth;
//     wildcard tables dataset.prefix* to the tables they match, narrowed by _TABLE_SUFFIX
//     conditions of a WHERE directly over them; time-travel and TABLESAMPLE reads; the
//     tables and subqueries passed to the ML/AI table-valued functions tvf.go declares,
//     e.g. ML.PREDICT(MODEL m, TABLE t), whose result lineage is Unknown), the
//     tables DML and DDL write, and findings for the deny rules the policies name
//     (policies.DenyRuleKinds: selectStar incl. whole-row values, missingPartitionFilter,
//     informationSchemaJobs, externalQuery, exportData, executeImmediate, crossJoin,
//     temporaryFunction, mlFunction);
//   - query parameters declared with the request's types (type-checked as BigQuery would;
//     a parameter the request does not declare is refused);
//   - failing closed: legacy SQL (the flag or a #legacySQL prefix) is ErrLegacySQL;
//     anything the analyser rejects, an unknown table, a view whose body cannot be
//     analysed, scripts with variables or control flow, user-defined table-valued
//     functions (routines are not read) and ML.*/AI.* functions tvf.go does not declare are
//     ErrUnanalysable (an *AnalysisError with the analyser's cleaned message and any
//     findings seen on the way); a TableSource that cannot be reached is
//     ErrCatalogUnavailable;
//   - column lineage (lineage.go): for a single query statement, each result column's
//     base source columns (through aliases, functions, CTEs, subqueries, set operations,
//     UNNEST, STRUCT packing, whole-row values, views and wildcards: a wildcard's column
//     is every matching table's column), how they flow (direct, function, aggregate;
//     value-revealing or counting aggregates), exact nested STRUCT fields where known, and
//     the separate ControlReads set (WHERE, JOIN, GROUP BY, HAVING, QUALIFY, ORDER BY,
//     CASE/IF conditions, EXISTS/IN). Anything the walker does not model makes the
//     affected column Unknown (sources: every column the statement scans) and
//     LineageComplete false;
//   - a bounded LRU of results keyed by a fingerprint of the SQL text, default
//     project/dataset, dialect, parameters and catalog version.
//
// Not done yet (next slices of issue 5):
//   - lineage of DML/DDL (INSERT ... SELECT write lineage), scripts, temp SQL UDFs,
//     GROUPING(), recursive CTEs, multi-level aggregates (Unknown or no lineage today);
//     source columns are top-level (a STRUCT field read is reported as its column);
//   - scripts with DECLARE/SET/BEGIN/IF/loops (denied as unanalysable; plain
//     multi-statement input is analysed statement by statement as SCRIPT);
//     EXECUTE IMMEDIATE of a literal is reported as EXECUTE_IMMEDIATE, not analysed;
//   - INFORMATION_SCHEMA views other than JOBS*; user-defined table-valued functions
//     (CREATE TABLE FUNCTION: routines.get is not read, and the emulator answers it 404);
//     models (models.get is not read: an ML function's result is its input's columns plus
//     generic ones, so model-specific columns such as predicted_label are unanalysable);
//     VECTOR_SEARCH and AI.FORECAST (named arguments): named, then denied as unanalysable;
//   - telling apart which tables a * or t.* reveals (StarTables lists every table read);
//   - running the engine in recycled worker processes (see TestEngineMemoryGrowth for
//     what the engine's memory does over many analyses).
package sqlanalysis
