package sqlanalysis

import (
	"fmt"
	"strings"

	"github.com/goccy/go-googlesql"
)

// BigQuery ML and AI table-valued functions (ML.PREDICT(MODEL m, TABLE t), ...).
//
// They are declared to the analyser with a generic signature so that the tables passed to
// them are resolved like any other read (a TABLE argument or a subquery becomes a scan
// inside the ResolvedTVFScan: its tables are listed and judged by the table rules). What
// the function returns depends on the model, whose metadata (models.get) the catalog does
// not read: the result is the first relation argument's columns (ML.PREDICT and most ML
// functions pass them through) plus the columns the function is documented to add (or a
// generic "prediction" column). A query naming any other output column is not analysed.
// The lineage of every column of the result is Unknown (lineage.go does not model a
// ResolvedTVFScan), so masking over-masks or refuses; the mlFunction finding stays, so a
// policy can still deny ML outright.

// mlTVFColumns are the columns an ML/AI table-valued function adds to its input's, by
// upper-case name. Functions listed are declared; other ML.*/AI.* names stay unanalysable.
var mlTVFColumns = map[string][]Column{
	"ML.PREDICT":         {{Name: "prediction", Type: "JSON"}},
	"ML.EXPLAIN_PREDICT": {{Name: "prediction", Type: "JSON"}},
	"ML.EVALUATE":        {{Name: "prediction", Type: "JSON"}},
	"ML.DETECT_ANOMALIES": {{Name: "is_anomaly", Type: "BOOL"}, {Name: "anomaly_probability", Type: "FLOAT64"},
		{Name: "prediction", Type: "JSON"}},
	"ML.FORECAST":         {{Name: "forecast_timestamp", Type: "TIMESTAMP"}, {Name: "forecast_value", Type: "FLOAT64"}, {Name: "prediction", Type: "JSON"}},
	"ML.EXPLAIN_FORECAST": {{Name: "prediction", Type: "JSON"}},
	"ML.TRANSFORM":        {{Name: "prediction", Type: "JSON"}},
	"ML.RECOMMEND":        {{Name: "prediction", Type: "JSON"}},
	"ML.GENERATE_TEXT": {{Name: "ml_generate_text_result", Type: "JSON"}, {Name: "ml_generate_text_llm_result", Type: "STRING"},
		{Name: "ml_generate_text_rai_result", Type: "STRING"}, {Name: "ml_generate_text_status", Type: "STRING"}},
	"ML.GENERATE_EMBEDDING": {{Name: "ml_generate_embedding_result", Type: "FLOAT64", Repeated: true},
		{Name: "ml_generate_embedding_statistics", Type: "JSON"}, {Name: "ml_generate_embedding_status", Type: "STRING"}},
	"ML.UNDERSTAND_TEXT":  {{Name: "ml_understand_text_result", Type: "JSON"}, {Name: "ml_understand_text_status", Type: "STRING"}},
	"ML.TRANSLATE":        {{Name: "ml_translate_result", Type: "JSON"}, {Name: "ml_translate_status", Type: "STRING"}},
	"ML.PROCESS_DOCUMENT": {{Name: "ml_process_document_result", Type: "JSON"}, {Name: "ml_process_document_status", Type: "STRING"}},
	"ML.TRAINING_INFO":    {{Name: "prediction", Type: "JSON"}},
	"ML.FEATURE_INFO":     {{Name: "prediction", Type: "JSON"}},
	"ML.WEIGHTS":          {{Name: "prediction", Type: "JSON"}},
	"ML.GLOBAL_EXPLAIN":   {{Name: "prediction", Type: "JSON"}},
	"AI.GENERATE_TABLE":   {{Name: "prediction", Type: "JSON"}, {Name: "status", Type: "STRING"}},
}

// modelOnly are the functions of mlTVFColumns that read no table, only the model and an
// options STRUCT (ML.FORECAST(MODEL m, STRUCT(30 AS horizon))).
var modelOnly = map[string]bool{
	"ML.FORECAST": true, "ML.EXPLAIN_FORECAST": true, "ML.TRAINING_INFO": true,
	"ML.FEATURE_INFO": true, "ML.WEIGHTS": true, "ML.GLOBAL_EXPLAIN": true,
}

// mlTVF computes a call's result schema from its actual arguments (tvf.go's header).
type mlTVF struct {
	googlesql.TableValuedFunctionCallbackDefaults
	e    *engine
	name string
	add  []Column
}

// GetSupportedSignaturesUserFacingText is what the analyser's "No matching signature"
// error lists.
func (m *mlTVF) GetSupportedSignaturesUserFacingText(_ *googlesql.LanguageOptions, _ bool) (string, error) {
	if modelOnly[m.name] {
		return m.name + "(MODEL model [, options])", nil
	}
	return m.name + "(MODEL model [, TABLE table | (query) [, options]])", nil
}

func (m *mlTVF) Resolve(_ *googlesql.AnalyzerOptions, args []*googlesql.TVFInputArgumentType, _ *googlesql.FunctionSignature, _ googlesql.CatalogNode, _ *googlesql.TypeFactory) (*googlesql.TVFSignature, error) {
	var cols []*googlesql.TVFSchemaColumn
	names := map[string]bool{}
	forwarded := false
	for _, a := range args {
		if a == nil {
			return nil, fmt.Errorf("%s: argument missing", m.name)
		}
		if isRel, err := a.IsRelation(); err != nil || !isRel || forwarded {
			continue
		}
		forwarded = true
		r, err := a.Relation()
		if err != nil || r == nil {
			return nil, fmt.Errorf("%s: relation argument unavailable", m.name)
		}
		if vt, err := r.IsValueTable(); err != nil || vt {
			return nil, fmt.Errorf("%s: a value-table argument is not analysed", m.name)
		}
		in, err := r.Columns()
		if err != nil {
			return nil, fmt.Errorf("%s: relation argument columns: %v", m.name, err)
		}
		for _, c := range in {
			if c == nil || c.IsPseudoColumn || c.Type_ == nil {
				continue
			}
			names[strings.ToLower(c.Name)] = true
			cols = append(cols, &googlesql.TVFSchemaColumn{Name: c.Name, Type_: c.Type_})
		}
	}
	for _, c := range m.add {
		if names[strings.ToLower(c.Name)] {
			continue
		}
		t, err := m.e.columnType(c.Type, c.Repeated, c.Fields)
		if err != nil {
			return nil, fmt.Errorf("%s column %s: %w", m.name, c.Name, err)
		}
		cols = append(cols, &googlesql.TVFSchemaColumn{Name: c.Name, Type_: t})
	}
	rel, err := googlesql.NewTVFRelation(cols)
	if err != nil {
		return nil, fmt.Errorf("%s: result schema: %w", m.name, err)
	}
	return googlesql.NewTVFSignature(args, rel, nil)
}

// mlTVF returns the engine's declaration of the ML/AI table-valued function name (upper
// case, e.g. ML.PREDICT), or nil when name is not one the analyser declares. Signatures:
// (MODEL), (MODEL, TABLE), (MODEL, TABLE, any), the trailing argument being the options
// STRUCT; functions that take no relation (modelOnly) also (MODEL, any). Not both: a
// subquery argument would match (MODEL, TABLE) and (MODEL, any), which the analyser
// refuses as ambiguous.
func (e *engine) mlTVF(name string) (*googlesql.TableValuedFunction, error) {
	add, ok := mlTVFColumns[name]
	if !ok {
		return nil, nil
	}
	if f := e.tvfs[name]; f != nil {
		return use(e, f), nil
	}
	arg := func(kind googlesql.SignatureArgumentKind) (*googlesql.FunctionArgumentType, error) {
		return googlesql.NewFunctionArgumentType4(kind, 1)
	}
	const (
		model = googlesql.SignatureArgumentKindArgTypeModel
		rel   = googlesql.SignatureArgumentKindArgTypeRelation
		any   = googlesql.SignatureArgumentKindArgTypeArbitrary
	)
	var sigs []*googlesql.FunctionSignature
	shapes := [][]googlesql.SignatureArgumentKind{{model}, {model, rel}, {model, rel, any}}
	if modelOnly[name] {
		shapes = [][]googlesql.SignatureArgumentKind{{model}, {model, any}}
	}
	for _, kinds := range shapes {
		var in []*googlesql.FunctionArgumentType
		for _, k := range kinds {
			a, err := arg(k)
			if err != nil {
				return nil, err
			}
			in = append(in, a)
		}
		res, err := arg(rel)
		if err != nil {
			return nil, err
		}
		so, err := googlesql.NewFunctionSignatureOptions()
		if err != nil {
			return nil, err
		}
		sig, err := googlesql.NewFunctionSignature2(res, in, 0, so)
		if err != nil {
			return nil, err
		}
		sigs = append(sigs, sig)
	}
	path := strings.Split(name, ".")
	f, err := googlesql.NewTableValuedFunctionFromImpl(&mlTVF{e: e, name: name, add: add}, path, "", sigs, &googlesql.TableValuedFunctionOptions{})
	if err != nil {
		return nil, fmt.Errorf("declare %s: %w", name, err)
	}
	if e.tvfs == nil {
		e.tvfs = map[string]*googlesql.TableValuedFunction{}
	}
	e.tvfs[name] = f
	return use(e, f), nil
}

// model is the engine's stand-in for a BigQuery ML model (models are not read from
// BigQuery: any model name resolves, with no declared inputs or outputs).
func (e *engine) model(fq string) (googlesql.ModelNode, error) {
	if m := e.models[fq]; m != nil {
		return use(e, m), nil
	}
	e.nextID++
	m, err := googlesql.NewSimpleModel(fq, nil, nil, true, e.nextID)
	if err != nil {
		return nil, fmt.Errorf("model %s: %w", fq, err)
	}
	if e.models == nil || len(e.models) >= maxCachedTables {
		e.models = map[string]*googlesql.SimpleModel{}
	}
	e.models[fq] = m
	return use(e, m), nil
}
