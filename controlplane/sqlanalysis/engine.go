package sqlanalysis

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/goccy/go-googlesql"
)

// engine is the process's one GoogleSQL engine. Every method runs under mu.
type engine struct {
	mu         sync.Mutex
	lang       *googlesql.LanguageOptions
	opts       *googlesql.AnalyzerOptions
	parserOpts *googlesql.ParserOptions
	tf         *googlesql.TypeFactory
	cat        *goCatalog
	multi      *googlesql.MultiCatalog
	// builtins and gocat are multi's parts, for scripts' own multi-catalogs (variables).
	builtins *googlesql.SimpleCatalog
	gocat    *googlesql.Catalog
	mode     googlesql.ParameterMode
	// tables caches the SimpleTable built for a *TableMeta (the TableSource's cache hands
	// out the same pointer until its TTL expires).
	tables map[string]cachedTable
	// tvfs are the ML/AI table-valued functions declared so far (tvf.go), by name;
	// models the stand-ins for the models named, by name.
	tvfs   map[string]*googlesql.TableValuedFunction
	models map[string]*googlesql.SimpleModel
	nextID int64
	// declared is set while a request's parameters are declared in opts.
	declared bool
	// inUse holds every engine object handed to GoogleSQL during the current analysis
	// (tables, placeholders, models, ML functions, script catalogs) until the analysis
	// ends (analyzeLocked). GoogleSQL only borrows them, and a resolved tree points into
	// them until it is dropped; the caches above may drop their entry at any time (a new
	// *TableMeta for the same name, a cache reset when full), and go-googlesql's finalizer
	// would then free the C++ object under the running analysis. Finalizers can run in
	// the middle of an engine call: go-googlesql releases its module lock while a catalog
	// callback runs. That use-after-free faulted jitgated (SIGSEGV in the engine's
	// post-resolution tree walk): lifetime_test.go reproduces it.
	inUse []any
	// infoSchema are the stand-in metadata of the INFORMATION_SCHEMA views, by name, so
	// that every reference reuses one engine table.
	infoSchema map[string]*TableMeta
}

// use records x as in use by the current analysis and returns it.
func use[T any](e *engine, x T) T {
	e.inUse = append(e.inUse, x)
	return x
}

// endAnalysis releases what the analysis used (under the lock, after its last engine call).
func (e *engine) endAnalysis() {
	clear(e.inUse)
	e.inUse = e.inUse[:0]
}

type cachedTable struct {
	meta  *TableMeta
	table *googlesql.SimpleTable
}

// maxCachedTables bounds the engine caches (a variable for tests).
var maxCachedTables = 4096

var (
	sharedOnce   sync.Once
	sharedEngine *engine
	sharedErr    error
)

// theEngine returns the process-wide engine, creating it on first use.
func theEngine() (*engine, error) {
	sharedOnce.Do(func() { sharedEngine, sharedErr = newEngine() })
	return sharedEngine, sharedErr
}

func newEngine() (*engine, error) {
	if err := googlesql.Init(); err != nil {
		return nil, fmt.Errorf("googlesql init: %w", err)
	}
	e := &engine{tables: map[string]cachedTable{}}
	var err error
	step := func(what string, f func() error) {
		if err == nil {
			if ferr := f(); ferr != nil {
				err = fmt.Errorf("googlesql %s: %w", what, ferr)
			}
		}
	}
	step("language options", func() (err error) { e.lang, err = googlesql.NewLanguageOptions(); return })
	step("maximum features", e.lang.EnableMaximumLanguageFeatures)
	step("product mode", func() error { return e.lang.SetProductMode(googlesql.ProductModeProductExternal) })
	step("statement kinds", e.lang.SetSupportsAllStatementKinds)
	step("QUALIFY", func() error { return e.lang.EnableReservableKeyword("QUALIFY", true) })
	step("analyzer options", func() (err error) { e.opts, err = googlesql.NewAnalyzerOptions2(); return })
	step("set language", func() error { return e.opts.SetLanguage(e.lang) })
	step("undeclared parameters", func() error { return e.opts.SetAllowUndeclaredParameters(true) })
	step("error mode", func() error { return e.opts.SetErrorMessageMode(googlesql.ErrorMessageModeErrorMessageOneLine) })
	step("parameter mode", func() error { return e.opts.SetParameterMode(googlesql.ParameterModeParameterNamed) })
	e.mode = googlesql.ParameterModeParameterNamed
	step("parser options", func() (err error) { e.parserOpts, err = e.opts.GetParserOptions(); return })
	step("type factory", func() (err error) { e.tf, err = googlesql.NewTypeFactory(); return })
	var builtins *googlesql.SimpleCatalog
	step("builtins", func() (err error) {
		builtins, err = googlesql.NewSimpleCatalog("builtins", e.tf)
		if err == nil {
			err = builtins.AddBuiltinFunctionsAndTypes(&googlesql.BuiltinFunctionOptions{LanguageOptions: e.lang})
		}
		return
	})
	e.cat = &goCatalog{e: e}
	var gocat *googlesql.Catalog
	step("go catalog", func() (err error) { gocat, err = googlesql.NewCatalogFromImpl(e.cat); return })
	// The Go catalog goes last: its errors are final, nothing after it would be consulted.
	step("multi catalog", func() (err error) {
		e.multi, err = googlesql.NewMultiCatalogCreate("jitgate", []googlesql.CatalogNode{builtins, gocat})
		return
	})
	if err != nil {
		return nil, err
	}
	e.builtins, e.gocat = builtins, gocat
	return e, nil
}

// setParameterMode switches between named (@x) and positional (?) parameters.
func (e *engine) setParameterMode(positional bool) error {
	want := googlesql.ParameterModeParameterNamed
	if positional {
		want = googlesql.ParameterModeParameterPositional
	}
	if want == e.mode {
		return nil
	}
	if err := e.opts.SetParameterMode(want); err != nil {
		return err
	}
	e.mode = want
	return nil
}

// declareParameters declares the request's query parameters with their types (the
// request's parameterType), so the analysis type-checks them as BigQuery will, and
// refuses parameters the request does not declare. Without parameters, or when one has no
// type, they stay undeclared (any type). Runs under the lock; undeclareParameters undoes it.
func (e *engine) declareParameters(params []Parameter) error {
	if len(params) == 0 {
		return nil
	}
	for _, p := range params {
		if strings.TrimSpace(p.Type) == "" {
			return nil
		}
	}
	e.declared = true
	if err := e.opts.SetAllowUndeclaredParameters(false); err != nil {
		return err
	}
	for _, p := range params {
		t, err := googlesql.AnalyzeType(p.Type, e.opts, e.multi, e.tf)
		if err != nil {
			return fmt.Errorf("query parameter %s type %s: %w", paramLabel(p), p.Type, err)
		}
		if t == nil {
			return fmt.Errorf("query parameter %s type %s is not a type", paramLabel(p), p.Type)
		}
		if p.Name == "" {
			err = e.opts.AddPositionalQueryParameter(t)
		} else {
			err = e.opts.AddQueryParameter(strings.ToLower(p.Name), t)
		}
		if err != nil {
			return fmt.Errorf("query parameter %s: %w", paramLabel(p), err)
		}
	}
	return nil
}

func (e *engine) undeclareParameters() {
	if !e.declared {
		return
	}
	e.declared = false
	_ = e.opts.ClearQueryParameters()
	_ = e.opts.ClearPositionalQueryParameters()
	_ = e.opts.SetAllowUndeclaredParameters(true)
}

func paramLabel(p Parameter) string {
	if p.Name == "" {
		return "(positional)"
	}
	return "@" + p.Name
}

// simpleTable builds (or reuses) the engine table for meta, named fq.
func (e *engine) simpleTable(fq string, meta *TableMeta) (*googlesql.SimpleTable, error) {
	if c, ok := e.tables[fq]; ok && c.meta == meta {
		return use(e, c.table), nil
	}
	t, err := e.buildTable(fq, meta, false)
	if err != nil {
		return nil, err
	}
	if len(e.tables) >= maxCachedTables {
		e.tables = map[string]cachedTable{}
	}
	e.tables[fq] = cachedTable{meta: meta, table: t}
	return use(e, t), nil
}

// placeholderMeta marks the engine tables standing in for metadata not fetched yet.
var placeholderMeta = &TableMeta{}

// placeholder is an empty engine table named fq, for a round that will be discarded.
func (e *engine) placeholder(fq string) (*googlesql.SimpleTable, error) {
	key := "placeholder\x00" + fq
	if c, ok := e.tables[key]; ok {
		return use(e, c.table), nil
	}
	e.nextID++
	t, err := googlesql.NewSimpleTable(fq, e.nextID)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", fq, err)
	}
	if len(e.tables) >= maxCachedTables {
		e.tables = map[string]cachedTable{}
	}
	e.tables[key] = cachedTable{meta: placeholderMeta, table: t}
	return use(e, t), nil
}

// tableSuffixColumn is the pseudo-column of a wildcard table.
const tableSuffixColumn = "_TABLE_SUFFIX"

func (e *engine) buildTable(fq string, meta *TableMeta, wildcard bool) (*googlesql.SimpleTable, error) {
	e.nextID++
	t, err := googlesql.NewSimpleTable(fq, e.nextID)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", fq, err)
	}
	names := map[string]bool{}
	add := func(name, typ string, repeated bool, fields []Column, pseudo bool) error {
		ty, err := e.columnType(typ, repeated, fields)
		if err != nil {
			return fmt.Errorf("table %s column %s: %w", fq, name, err)
		}
		col, err := googlesql.NewSimpleColumn(fq, name, ty, pseudo, !pseudo)
		if err != nil {
			return fmt.Errorf("table %s column %s: %w", fq, name, err)
		}
		return t.AddColumn2(col, true)
	}
	for _, c := range meta.Columns {
		if c.Name == "" || names[strings.ToLower(c.Name)] {
			return nil, fmt.Errorf("table %s: empty or duplicate column name %q", fq, c.Name)
		}
		names[strings.ToLower(c.Name)] = true
		if err := add(c.Name, c.Type, c.Repeated, c.Fields, false); err != nil {
			return nil, err
		}
	}
	if meta.IngestionTimePartitioned {
		if err := add("_PARTITIONTIME", "TIMESTAMP", false, nil, true); err != nil {
			return nil, err
		}
		if err := add("_PARTITIONDATE", "DATE", false, nil, true); err != nil {
			return nil, err
		}
	}
	if wildcard {
		if err := add(tableSuffixColumn, "STRING", false, nil, true); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// wildcardTable builds (or reuses) the engine table of a wildcard: meta's columns plus the
// _TABLE_SUFFIX pseudo-column.
func (e *engine) wildcardTable(fq string, meta *TableMeta) (*googlesql.SimpleTable, error) {
	key := "wildcard\x00" + fq
	if c, ok := e.tables[key]; ok && c.meta == meta {
		return use(e, c.table), nil
	}
	t, err := e.buildTable(fq, meta, true)
	if err != nil {
		return nil, err
	}
	if len(e.tables) >= maxCachedTables {
		e.tables = map[string]cachedTable{}
	}
	e.tables[key] = cachedTable{meta: meta, table: t}
	return use(e, t), nil
}

func (e *engine) columnType(typ string, repeated bool, fields []Column) (googlesql.Googlesql_TypeNode, error) {
	var (
		t   googlesql.Googlesql_TypeNode
		err error
	)
	switch strings.ToUpper(typ) {
	case "STRING":
		t, err = e.tf.GetString()
	case "BYTES":
		t, err = e.tf.GetBytes()
	case "INTEGER", "INT64":
		t, err = e.tf.GetInt64()
	case "FLOAT", "FLOAT64":
		t, err = e.tf.GetDouble()
	case "NUMERIC", "DECIMAL":
		t, err = e.tf.GetNumeric()
	case "BIGNUMERIC", "BIGDECIMAL":
		t, err = e.tf.GetBignumeric()
	case "BOOLEAN", "BOOL":
		t, err = e.tf.GetBool()
	case "TIMESTAMP":
		t, err = e.tf.GetTimestamp()
	case "DATE":
		t, err = e.tf.GetDate()
	case "TIME":
		t, err = e.tf.GetTime()
	case "DATETIME":
		t, err = e.tf.GetDatetime()
	case "GEOGRAPHY":
		t, err = e.tf.GetGeography()
	case "JSON":
		t, err = e.tf.GetJson()
	case "INTERVAL":
		t, err = e.tf.GetInterval()
	case "RECORD", "STRUCT":
		if len(fields) == 0 {
			return nil, fmt.Errorf("%s without fields", typ)
		}
		sf := make([]*googlesql.StructField, 0, len(fields))
		for _, f := range fields {
			ft, ferr := e.columnType(f.Type, f.Repeated, f.Fields)
			if ferr != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name, ferr)
			}
			sf = append(sf, &googlesql.StructField{Name: f.Name, Type_: ft})
		}
		t, err = e.tf.MakeStructType2(sf)
	default:
		return nil, fmt.Errorf("type %q is not supported", typ)
	}
	if err != nil {
		return nil, err
	}
	if repeated {
		return e.tf.MakeArrayType2(t)
	}
	return t, nil
}

// ---- parsing helpers ----

// parseScript parses text as a script (a single statement is a one-statement script).
func (e *engine) parseScript(sql string) (*googlesql.ParserOutput, []googlesql.ASTStatementNode, error) {
	out, err := googlesql.ParseScript(sql, e.parserOpts, &googlesql.ErrorMessageOptions{Mode: googlesql.ErrorMessageModeErrorMessageOneLine, Stability: googlesql.ErrorMessageStabilityProduction})
	if err != nil {
		return nil, nil, err
	}
	if out == nil {
		return nil, nil, fmt.Errorf("parser returned nothing")
	}
	script, err := out.Script()
	if err != nil || script == nil {
		return nil, nil, fmt.Errorf("parser returned no script: %v", err)
	}
	list, err := script.StatementListNode()
	if err != nil || list == nil {
		return nil, nil, fmt.Errorf("parser returned no statement list: %v", err)
	}
	n, err := list.NumChildren()
	if err != nil {
		return nil, nil, err
	}
	stmts := make([]googlesql.ASTStatementNode, 0, n)
	for i := int32(0); i < n; i++ {
		s, err := list.StatementList(i)
		if err != nil || s == nil {
			return nil, nil, fmt.Errorf("statement %d: %v", i, err)
		}
		stmts = append(stmts, s)
	}
	return out, stmts, nil
}

type byteRange struct {
	start, end int
	repl       string
}

// astFacts is what one walk of a statement's parse tree collects.
type astFacts struct {
	// rewrites turn a backticked dotted path (`acme.crm.users`) in a table path or a
	// statement target into `acme`.`crm`.`users`: GoogleSQL would otherwise take the whole
	// string as the implicit alias where BigQuery takes the last part.
	rewrites []byteRange
	// selectStar: a * or t.* outside a function call (COUNT(*) is not one).
	selectStar bool
}

// inspectAST walks the parse tree by hand: in v0.3.0 ASTNode.GetDescendantsWithKinds
// returns nothing.
func inspectAST(stmt googlesql.ASTNode, sql string) (*astFacts, error) {
	f := &astFacts{}
	var walk func(n googlesql.ASTNode, parent, grand googlesql.ASTNode, parentKind googlesql.ASTNodeKind, depth int) error
	walk = func(n, parent, grand googlesql.ASTNode, parentKind googlesql.ASTNodeKind, depth int) error {
		if depth > 2000 {
			return fmt.Errorf("query nests too deeply")
		}
		kind, err := n.NodeKind()
		if err != nil {
			return err
		}
		switch kind {
		case googlesql.ASTNodeKindAstStar, googlesql.ASTNodeKindAstStarWithModifiers,
			googlesql.ASTNodeKindAstDotStar, googlesql.ASTNodeKindAstDotStarWithModifiers:
			if parentKind != googlesql.ASTNodeKindAstFunctionCall {
				f.selectStar = true
			}
		case googlesql.ASTNodeKindAstIdentifier:
			if parentKind == googlesql.ASTNodeKindAstPathExpression && grand != nil {
				gk, _ := grand.NodeKind()
				isStmt, _ := grand.IsStatement()
				if gk == googlesql.ASTNodeKindAstTablePathExpression || isStmt {
					if err := f.rewriteIdentifier(n, sql); err != nil {
						return err
					}
				}
			}
		}
		c, err := n.NumChildren()
		if err != nil {
			return err
		}
		for i := int32(0); i < c; i++ {
			ch, err := n.Child(i)
			if err != nil {
				return err
			}
			if ch == nil {
				continue
			}
			if err := walk(ch, n, parent, kind, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	if err := walk(stmt, nil, nil, -1, 0); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *astFacts) rewriteIdentifier(n googlesql.ASTNode, sql string) error {
	id, ok := n.(*googlesql.ASTIdentifier)
	if !ok {
		return nil
	}
	quoted, err := id.IsQuoted()
	if err != nil || !quoted {
		return err
	}
	name, err := id.GetAsString()
	if err != nil || !strings.Contains(name, ".") {
		return err
	}
	loc, err := id.Location()
	if err != nil || loc == nil {
		return fmt.Errorf("identifier without location")
	}
	s, e1 := loc.Start()
	en, e2 := loc.End()
	if e1 != nil || e2 != nil || s == nil || en == nil {
		return fmt.Errorf("identifier without location")
	}
	so, _ := s.GetByteOffset()
	eo, _ := en.GetByteOffset()
	if so < 0 || int(eo) > len(sql) || so >= eo || sql[so] != '`' || sql[eo-1] != '`' {
		return fmt.Errorf("unexpected identifier location")
	}
	parts := strings.Split(name, ".")
	for i, p := range parts {
		parts[i] = quoteIdent(p)
	}
	f.rewrites = append(f.rewrites, byteRange{int(so), int(eo), strings.Join(parts, ".")})
	return nil
}

func quoteIdent(s string) string {
	r := strings.NewReplacer("\\", "\\\\", "`", "\\`")
	return "`" + r.Replace(s) + "`"
}

func applyRewrites(sql string, rw []byteRange) string {
	sort.Slice(rw, func(i, j int) bool { return rw[i].start > rw[j].start })
	for _, r := range rw {
		sql = sql[:r.start] + r.repl + sql[r.end:]
	}
	return sql
}

// cleanMessage trims the status prefix the engine puts on its errors.
var statusPrefix = regexp.MustCompile(`^(?:generic::)?[a-z_]+: `)

func cleanMessage(err error) string {
	msg := strings.TrimSpace(err.Error())
	for {
		m := statusPrefix.FindString(msg)
		if m == "" {
			break
		}
		msg = msg[len(m):]
	}
	msg = strings.ReplaceAll(msg, "\n", " ")
	if len(msg) > 500 {
		msg = msg[:500] + "..."
	}
	return msg
}
